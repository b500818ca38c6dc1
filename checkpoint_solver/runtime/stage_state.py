"""What a chain stage's rerun must find as its forward did: the RNG streams and autocast state it
started with (`StageStart`), and its buffers as they were before (`StageBuffers`), so a rerun
draws the same dropout masks, runs the same kernels in the same precision, and BatchNorm's running
statistics are updated once per step.

# NOTE [Recompute RNG]
A stage the schedule reruns has its CPU generator's state (and the current CUDA device's) taken as
it starts (`StageStart.capture`); each rerun forks the generators, sets them to that state, runs,
and the fork puts the stream back: dropout draws the forward's masks, and the step's own stream is
the one plain autograd leaves.

# NOTE [Buffers once per step]
The first step watches which buffers each stage's forward writes (`StageBuffers.watch`, comparing
values too: BatchNorm's running statistics change without a version bump); every rerun puts those
back when it ends (`StageBuffers.protect`), so they are updated once per step, as in eager.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

import torch

from checkpoint_solver.profiling.snapshot import RngState

__all__ = ["BufferWatch", "StageBuffers", "StageStart"]


@dataclass(frozen=True, eq=False)
class StageStart:
    """The RNG and autocast states a stage started with, restored when it is rerun."""

    rng: RngState
    autocast: tuple[tuple[str, bool, torch.dtype], ...]
    autocast_cache: bool

    @classmethod
    def capture(cls, device_type: str) -> StageStart:
        """The states now; the CUDA generator read is the current device's, when `device_type` is
        CUDA and CUDA is initialised."""
        cuda: list[int] = []
        if device_type == "cuda" and torch.cuda.is_initialized():
            cuda = [torch.cuda.current_device()]
        autocast = tuple(
            (dt, torch.is_autocast_enabled(dt), torch.get_autocast_dtype(dt))
            for dt in dict.fromkeys(("cpu", device_type))
        )
        return cls(RngState.take(cuda), autocast, torch.is_autocast_cache_enabled())

    def enter(self, stack: ExitStack) -> None:
        """Run the rest of `stack`'s block as the stage started: the generators forked (put back
        when the block ends) and set to the stage's states, autocast as it was."""
        stack.enter_context(
            torch.random.fork_rng(devices=self.rng.cuda_devices, device_type="cuda")
        )
        self.rng.restore()
        for dt, enabled, dtype in self.autocast:
            stack.enter_context(
                torch.autocast(dt, dtype=dtype, enabled=enabled, cache_enabled=self.autocast_cache)
            )


@dataclass
class StageBuffers:
    """The buffers one stage's forward may write: its block's, and those outside every block (the
    prologue and glue may call modules that are no stage, e.g. a stem's BatchNorm), with those
    seen to change (`mutated`, indices into `buffers`, learnt as steps run)."""

    buffers: list[torch.Tensor] = field(default_factory=list)
    mutated: set[int] = field(default_factory=set)

    def watch(self, *, compare_values: bool) -> BufferWatch:
        """Start watching the buffers for writes, until `BufferWatch.close`. Some kernels (batch
        norm's running statistics) write buffers without bumping their version: with
        `compare_values` (a first step), their values are compared too."""
        before = [b.clone() for b in self.buffers] if compare_values else None
        return BufferWatch(self, [b._version for b in self.buffers], before)

    def protect(self, stack: ExitStack) -> None:
        """Put back, when `stack` closes, every buffer the stage's forward writes."""
        saved = [(b, b.detach().clone()) for i, b in enumerate(self.buffers) if i in self.mutated]
        stack.callback(_restore, saved)


@dataclass
class BufferWatch:
    """One stage's forward being watched for buffer writes (`StageBuffers.watch`)."""

    region: StageBuffers
    versions: list[int]
    before: list[torch.Tensor] | None

    def close(self) -> None:
        """The stage's forward ended: note which buffers it wrote."""
        region = self.region
        for i, (b, v) in enumerate(zip(region.buffers, self.versions, strict=True)):
            if b._version != v or (self.before is not None and not torch.equal(b, self.before[i])):
                region.mutated.add(i)
        self.before = None


def _restore(saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for b, v in saved:
            b.copy_(v)
