"""What a measurement or a probe must leave as it found it: the RNG streams and the buffers.

Shared by the profiler (its timed steps and traces), the op-level capture and the runtime's
probe before a first step, so each puts back the same things: the CPU generator, every
initialised CUDA device's generator, and the module's buffers (BatchNorm's running statistics
and batch counter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Snapshot"]


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The RNG streams and a module's buffers at one moment (`take`), to put back (`restore`)."""

    buffers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    cpu_rng: torch.Tensor
    cuda_rng: tuple[torch.Tensor, ...] | None

    @classmethod
    def take(cls, module: nn.Module | None = None) -> Snapshot:
        buffers = () if module is None else tuple((b, b.detach().clone()) for b in module.buffers())
        cuda = tuple(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else None
        return cls(buffers, torch.get_rng_state(), cuda)

    def restore(self) -> None:
        with torch.no_grad():
            for b, v in self.buffers:
                b.copy_(v)
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(list(self.cuda_rng))
