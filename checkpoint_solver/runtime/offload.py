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

from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch.utils import _pytree as pytree

from checkpoint_solver.profiling.tracker import host_memory, storage_key
from checkpoint_solver.runtime.program import Boundary

__all__ = ["Copier", "Copy", "HostCopy"]

K = TypeVar("K")


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


def _whole(t: torch.Tensor) -> torch.Tensor:
    """The bytes of `t`'s whole storage, as a flat uint8 tensor."""
    st = t.untyped_storage()
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(st, 0, (st.nbytes(),), (1,))


def _view(like: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """`like`'s view (dtype, shape, strides, offset) of `raw`'s storage."""
    return torch.empty(0, dtype=like.dtype, device=raw.device).set_(
        raw.untyped_storage(), like.storage_offset(), like.shape, like.stride()
    )


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
        moved, wait = self.copy({h: t for h, t in env.items() if h not in stay}, "d2h")
        return Copy(HostCopy({**moved, **stay}, moved), wait)

    def prefetch(self, host: HostCopy, device: torch.device) -> Copy:
        """Start copying `host`'s tensors back to the device (those that stayed there are
        passed on)."""
        back, wait = self.copy({h: host[h] for h in host.moved}, "h2d", device)
        stay = {h: t for h, t in host.items() if h not in host.moved}
        return Copy(Boundary({**back, **stay}), wait)

    def copy(
        self, values: Mapping[K, torch.Tensor], direction: str, device: torch.device | None = None
    ) -> tuple[dict[K, torch.Tensor], Callable[[], None]]:
        """Start copying `values` to host memory (``"d2h"``) or to `device` (``"h2d"``): the
        copies, and what makes the compute stream wait for them. Each storage is copied once,
        whole, and the tensors are rebuilt as the same views of the copy: values that share a
        storage (an in-place op's output and its input, a view and its base) still share it, and
        the bytes moved are the storages' bytes, as the profiler counts them."""
        target = torch.device("cpu") if direction == "d2h" else device
        by_storage: dict[int, list[K]] = {}
        for h, t in values.items():
            by_storage.setdefault(storage_key(t), []).append(h)
        cuda = self.cuda and (direction == "h2d" or any(t.is_cuda for t in values.values()))
        main = torch.cuda.current_stream() if cuda else None
        copies: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # storage -> (source, copy)
        with ExitStack() as stack, torch.no_grad():
            for key, handles in by_storage.items():
                src = _whole(values[handles[0]])
                with ExitStack() as alloc:
                    if direction == "d2h":
                        alloc.enter_context(host_memory())
                    dst = torch.empty(
                        src.shape,
                        dtype=torch.uint8,
                        device=target,
                        pin_memory=cuda and direction == "d2h",
                    )
                copies[key] = (src, dst)
            if main is not None:
                stream = self._stream(direction)
                stream.wait_stream(main)  # after the work that made (or allocated) the tensors
                stack.enter_context(torch.cuda.stream(stream))
            for src, dst in copies.values():
                dst.copy_(src, non_blocking=cuda)
        out = {
            h: _like(values[h], _view(values[h], copies[key][1]))
            for key, handles in by_storage.items()
            for h in handles
        }
        if not cuda:
            return out, _nothing
        done = torch.cuda.Event()
        done.record(self._stream(direction))

        def wait() -> None:
            torch.cuda.current_stream().wait_event(done)

        return out, wait

    def copy_values(
        self,
        values: Mapping[K, Any],
        direction: str,
        device: torch.device | None = None,
        resident: frozenset[int] | set[int] = frozenset(),
    ) -> tuple[dict[K, Any], Callable[[], None]]:
        """`copy` for values that may be tuples or lists of tensors (an op with several
        outputs): their tensor leaves are copied, their other leaves passed on, and so are
        tensors whose storage is in `resident` (an input's or a parameter's, and views of them:
        the device keeps them anyway)."""
        trees = {k: pytree.tree_flatten(v) for k, v in values.items()}
        leaves = {
            (k, i): leaf
            for k, (flat, _) in trees.items()
            for i, leaf in enumerate(flat)
            if isinstance(leaf, torch.Tensor) and storage_key(leaf) not in resident
        }
        copied, wait = self.copy(leaves, direction, device)
        out = {
            k: pytree.tree_unflatten(
                [copied.get((k, i), leaf) for i, leaf in enumerate(flat)], spec
            )
            for k, (flat, spec) in trees.items()
        }
        return out, wait
