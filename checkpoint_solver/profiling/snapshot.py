"""What a measurement, a probe or a rerun must leave as it found it: the RNG streams and the
buffers.

`RngState` is the one place the generators are read and put back: the profiler's timed steps and
traces, the op-level capture and the runtime's probe (through `Snapshot`, with the buffers), and
the reruns of both executors, which draw what the forward drew. Each covers the CPU generator
and the CUDA devices it names (every initialised one by default).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["RngState", "Snapshot"]

Device = int | torch.device


@dataclass(frozen=True, eq=False)
class RngState:
    """The CPU generator's state and the named CUDA devices' at one moment."""

    cpu: torch.Tensor
    cuda: tuple[tuple[Device, torch.Tensor], ...] = ()

    @classmethod
    def take(cls, cuda_devices: Iterable[Device] | None = None) -> RngState:
        """The states now; `cuda_devices` None means every initialised CUDA device (none when
        CUDA is not initialised: reading a generator would initialise it)."""
        if cuda_devices is None:
            cuda_devices = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else ()
        cuda = tuple((d, torch.cuda.get_rng_state(d)) for d in cuda_devices)
        return cls(torch.get_rng_state(), cuda)

    @property
    def cuda_devices(self) -> list[Device]:
        return [d for d, _ in self.cuda]

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        for d, state in self.cuda:
            torch.cuda.set_rng_state(state, d)


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The RNG streams and a module's buffers at one moment (`take`), to put back (`restore`)."""

    buffers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    rng: RngState

    @classmethod
    def take(cls, module: nn.Module | None = None) -> Snapshot:
        buffers = () if module is None else tuple((b, b.detach().clone()) for b in module.buffers())
        return cls(buffers, RngState.take())

    def restore(self) -> None:
        with torch.no_grad():
            for b, v in self.buffers:
                b.copy_(v)
        self.rng.restore()
