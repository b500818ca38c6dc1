"""Copies of kept boundaries to host memory and back, for a schedule's `Offload` and `Prefetch`.

On CUDA a copy runs on its own stream (one per direction) into pinned host memory (or back),
ordered after the work that made the tensor by `wait_stream`, and its end is an event. The
executor makes the compute stream wait for that event when the op beside the copy has been
issued (`Copy.wait`): no device-wide synchronisation, and the device tensor of an offload is
dropped only after the compute stream waited, so the caching allocator never hands its memory
out while the copy still reads it.

On CPU the host copy is a clone made under `checkpoint_solver.profiling.tracker.host_memory`, so
the storage tracker counts it as host memory, not as the device's: the whole path (which ops
copy, when the device copy is dropped, the host peak) runs and is measured without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from checkpoint_solver.profiling.tracker import host_memory, storage_key
from checkpoint_solver.runtime.program import Boundary

__all__ = ["Copier", "Copy"]


class HostCopy(Boundary):
    """An offloaded boundary: host copies of the values in `moved`, the others as they were."""

    def __init__(self, values: dict[int, torch.Tensor], moved: Iterable[int]) -> None:
        super().__init__(values)
        self.moved = frozenset(moved)


@dataclass
class Copy:
    """One copy in flight: its result, and what makes the compute stream wait for it."""

    result: Boundary
    wait: Callable[[], None]


def _nothing() -> None:
    return None


def _like(original: torch.Tensor, copy: torch.Tensor) -> torch.Tensor:
    """The copy requires grad where the original did (a rerun's leaves must, see
    `checkpoint_solver.runtime.program.detach`)."""
    return copy.requires_grad_(True) if original.requires_grad else copy


class Copier:
    """Makes the copies of one executor (its streams, on CUDA)."""

    def __init__(self, device_type: str) -> None:
        self.cuda = device_type == "cuda" and torch.cuda.is_available()
        self.streams: dict[str, torch.cuda.Stream] = {}

    def _stream(self, direction: str) -> torch.cuda.Stream:
        if direction not in self.streams:
            self.streams[direction] = torch.cuda.Stream()
        return self.streams[direction]

    def offload(self, env: Boundary, resident: set[int]) -> Copy:
        """Start copying `env`'s tensors to host memory, but those whose storage is in
        `resident` (the caller's inputs, parameters, buffers and views of them: the device keeps
        them anyway, so a copy would free nothing): they stay as they are."""
        stay = {h: t for h, t in env.items() if storage_key(t) in resident}
        move = Boundary({h: t for h, t in env.items() if h not in stay})
        if not self.cuda:
            with host_memory(), torch.no_grad():
                host = {h: _like(t, t.clone()) for h, t in move.items()}
            return Copy(HostCopy({**host, **stay}, move), _nothing)
        copy = self._cuda_copy(move, "d2h")
        return Copy(HostCopy({**copy.result, **stay}, move), copy.wait)

    def prefetch(self, host: HostCopy, device: torch.device) -> Copy:
        """Start copying `host`'s tensors back to the device (those that stayed there are
        passed on)."""
        if not self.cuda:
            with torch.no_grad():
                back = {h: _like(t, t.clone()) if h in host.moved else t for h, t in host.items()}
            return Copy(Boundary(back), _nothing)
        stay = {h: t for h, t in host.items() if h not in host.moved}
        copy = self._cuda_copy(Boundary({h: host[h] for h in host.moved}), "h2d", device)
        return Copy(Boundary({**copy.result, **stay}), copy.wait)

    def _cuda_copy(self, env: Boundary, direction: str, device: torch.device | None = None) -> Copy:
        main = torch.cuda.current_stream()
        stream = self._stream(direction)
        out: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for h, t in env.items():
                if direction == "d2h":
                    with host_memory():
                        out[h] = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
                else:
                    # Allocated on the compute stream, which uses it next.
                    out[h] = torch.empty(t.shape, dtype=t.dtype, device=device)
            stream.wait_stream(main)  # after the work that made (or allocated) the tensors
            with torch.cuda.stream(stream):
                for h, t in env.items():
                    out[h].copy_(t, non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)

        def wait() -> None:
            torch.cuda.current_stream().wait_event(done)

        return Copy(Boundary({h: _like(env[h], t) for h, t in out.items()}), wait)
