"""A live-storage tracker: which tensor storages ops create, read and free, phase by phase.

A `TorchDispatchMode` sees every ATen op (forward and backward); each new output storage is
registered once with a serial number (a freed `StorageImpl`'s address is reused, so the address
only identifies live storages) and a weak finalizer that records its release. Only
storages created by ops under the tracker count: parameters, buffers and the caller's inputs
existed before and are never counted. The result is an event log from which memory curves are
computed after the fact, so storages found later to be parameter gradients can be left out.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "GradBuffers",
    "PhaseStats",
    "StorageTracker",
    "distinct_storage_nbytes",
    "optimizer_state_tensors",
    "storage_key",
    "storage_nbytes",
]

Phase = tuple[str, int]  # ("F", stage) or ("B", stage)


def storage_key(t: torch.Tensor) -> int:
    """Identity of a tensor's storage (its StorageImpl), shared by views."""
    return int(t.untyped_storage()._cdata)


def storage_nbytes(t: torch.Tensor) -> int:
    return int(t.untyped_storage().nbytes())


def optimizer_state_tensors(optimizer: Any) -> list[torch.Tensor]:
    """The tensors an optimizer keeps between steps (AdamW's moments and step counts), those that
    are not parameters themselves."""
    params = {storage_key(p) for g in optimizer.param_groups for p in g["params"]}
    return [
        t
        for st in optimizer.state.values()
        for t in st.values()
        if isinstance(t, torch.Tensor) and storage_key(t) not in params
    ]


def distinct_storage_nbytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the storages behind `tensors`, each storage counted once (views share one)."""
    return sum(storage_nbytes(t) for t in {storage_key(t): t for t in tensors}.values())


@dataclass
class _Record:
    nbytes: int
    produced: Phase
    last_forward_use: int  # forward stage index of the last forward op that read it
    readers: set[int] = field(default_factory=set)  # forward stages whose ops read it


@dataclass
class PhaseStats:
    """Live tracked bytes when a phase began, its peak, and when it ended."""

    start: int = 0
    peak: int = 0
    end: int = 0
    ops: int = 0


_SUMS = (torch.ops.aten.add.Tensor, torch.ops.aten.copy_.default)

_host = threading.local()


@contextmanager
def host_memory() -> Iterator[None]:
    """Storages made inside are host memory (an offload's copies on CPU): a tracker counts them
    in `StorageTracker.host_peak`, not with the device's."""
    before = getattr(_host, "on", False)
    _host.on = True
    try:
        yield
    finally:
        _host.on = before


@dataclass
class StorageTracker(TorchDispatchMode):
    """Track storages created by ops; `phase` is set from outside (module and gradient hooks)."""

    phase: Phase = ("F", 0)
    records: dict[int, _Record] = field(default_factory=dict)  # serial -> record
    live: dict[int, int] = field(default_factory=dict)  # storage address -> serial
    events: list[tuple[Phase, int, int]] = field(default_factory=list)  # (phase, serial, +/- bytes)
    ops: dict[Phase, int] = field(default_factory=dict)
    ignore: set[int] = field(default_factory=set)  # pre-existing storages: params, buffers, inputs
    active: bool = True
    adds: dict[int, tuple[int, ...]] = field(default_factory=dict)  # backward sums/copies: sources
    # serial -> ops its phase had run when it was freed (0: freed as the phase began)
    freed_after: dict[int, int] = field(default_factory=dict)
    host_now: int = 0  # host memory (`host_memory`) live now, and its peak
    host_peak: int = 0
    host_keys: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        super().__init__()
        # Under torch.autocast, parameters are cast once and the casts cached until autocast
        # exits: model state like the parameters themselves (whose bytes they mirror), not
        # activations, whatever the schedule does. Known when the tracker is made.
        self.cast_cache = torch.is_autocast_cache_enabled() and any(
            torch.is_autocast_enabled(dt) for dt in ("cpu", "cuda")
        )

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        """Let torch.compile'd code run under the tracker: Dynamo skips (runs eagerly) every frame
        while a dispatch mode that does not say this is active, so a compiled model's step would
        be measured as its eager self. The tracker only observes ops; the compiled graphs'
        ops (aot_eager runs them through the dispatcher) are then what it counts."""
        return True

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.events.append((phase, 0, 0))  # a marker, so empty phases still appear

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kind, stage = self.phase
        self.ops[self.phase] = self.ops.get(self.phase, 0) + 1
        if kind == "F":
            for t in tree_flatten((args, kwargs))[0]:
                if isinstance(t, torch.Tensor):
                    serial = self.serial(t)
                    if serial is not None:
                        rec = self.records[serial]
                        rec.last_forward_use = max(rec.last_forward_use, stage)
                        rec.readers.add(stage)
        out = func(*args, **(kwargs or {}))
        if (
            self.cast_cache
            and func is torch.ops.aten._to_copy.default
            and isinstance(args[0], torch.nn.Parameter)
            and isinstance(out, torch.Tensor)
        ):
            self.ignore.add(storage_key(out))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self._register(t)
        if kind == "B" and func in _SUMS and isinstance(out, torch.Tensor):
            # The engine sums gradients out of place, and a gradient may be copied into its
            # parameter's layout: remember the sources (see GradBuffers).
            serial = self.serial(out)
            if serial is not None:
                terms = tuple(
                    s for a in args if isinstance(a, torch.Tensor) and (s := self.serial(a))
                )
                self.adds[serial] = self.adds.get(serial, ()) + terms
        return out

    def serial(self, t: torch.Tensor) -> int | None:
        """The serial number of a live tracked tensor's storage, or None if not tracked."""
        return self.live.get(storage_key(t))

    def _register(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = int(st._cdata)
        nbytes = int(st.nbytes())
        if key in self.live or key in self.ignore or nbytes == 0 or key in self.host_keys:
            return
        if getattr(_host, "on", False):
            self.host_keys.add(key)
            self.host_now += nbytes
            self.host_peak = max(self.host_peak, self.host_now)
            weakref.finalize(st, self._host_freed, key, nbytes)
            return
        serial = len(self.records) + 1
        stage = self.phase[1] if self.phase[0] == "F" else -1
        self.records[serial] = _Record(nbytes, self.phase, stage)
        self.live[key] = serial
        self.events.append((self.phase, serial, nbytes))
        weakref.finalize(st, self._freed, key, serial, nbytes)

    def _host_freed(self, key: int, nbytes: int) -> None:
        self.host_keys.discard(key)
        self.host_now -= nbytes

    def _freed(self, key: int, serial: int, nbytes: int) -> None:
        if self.live.get(key) == serial:
            del self.live[key]
        if self.active:
            self.events.append((self.phase, serial, -nbytes))
            self.freed_after[serial] = self.ops.get(self.phase, 0)

    def curve(self, exclude: set[int]) -> tuple[dict[Phase, PhaseStats], int]:
        """Per-phase start/peak/end of live tracked bytes, leaving out storages in `exclude`, and
        the overall peak."""
        stats: dict[Phase, PhaseStats] = {}
        mem = peak = 0
        current: PhaseStats | None = None
        last: Phase | None = None
        for phase, key, delta in self.events:
            if phase != last:
                if current is not None:
                    current.end = mem
                current = stats.setdefault(phase, PhaseStats(start=mem, peak=mem))
                last = phase
            if key and key not in exclude:  # key: a serial (0 marks a phase change)
                mem += delta
                peak = max(peak, mem)
                assert current is not None
                current.peak = max(current.peak, mem)
        if current is not None:
            current.end = mem
        for phase, n in self.ops.items():
            stats.setdefault(phase, PhaseStats()).ops = n
        return stats, peak


def gradient_sums(seeds: Iterable[Hashable], sums: Mapping[Any, Sequence[Any]]) -> set[Any]:
    """`seeds` (parameter gradients) closed over `sums` (each sum -> its terms): a sum is gradient
    memory exactly when one of its terms is, and so are the terms of a sum that is (both ways: the
    engine's buffer is a sum of contributions, and a sum of a gradient buffer is one). Shared by
    the live-storage measurement and the op-level capture, so both leave out the same bytes."""
    out = set(seeds)
    changed = True
    while changed:
        changed = False
        for total, terms in sums.items():
            if total in out:
                new = [t for t in terms if t not in out]
            elif any(t in out for t in terms):
                new = [total]
            else:
                continue
            if new:
                out.update(new)
                changed = True
    return out


class GradBuffers:
    """The tracked storages autograd hands to the parameters' gradient accumulators.

    A parameter used in several places (an RNN cell's weights, tied embeddings) has its gradient
    summed in the engine's buffer from the first use's backward until the last, and that buffer
    becomes (or is copied into) ``p.grad``: it is parameter-gradient memory, not activation
    memory, for all that time. The buffer each accumulator receives is found by a pre-hook on it
    (a hook that holds no gradient longer than the engine does); the sums that made it, and their
    terms (each use's contribution), from the tracker's record of the backward's additions.
    Use as ``with GradBuffers(params) as gb: gb.tracker = tracker; ...;
    tracker.curve(exclude=gb.excluded(params))``. Enter it before the tracker (it makes a view of
    each parameter to find its accumulator)."""

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.tracker: StorageTracker | None = None
        self.serials: set[int] = set()
        # Per phase, the bytes of the gradients whose accumulator ran in it (a parameter several
        # stages use gets its gradient after the backward of its first use).
        self.done: dict[Phase, int] = {}
        self._nodes: list[Any] = []
        self._handles: list[Any] = []

    def __enter__(self) -> GradBuffers:
        for p in self.params:
            with torch.enable_grad():
                view = p.view_as(p).grad_fn
            node = view.next_functions[0][0] if view is not None else None
            if node is not None:
                self._nodes.append(node)  # keeps the accumulator (a weakly cached node) alive
                self._handles.append(node.register_prehook(self._pre))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._nodes.clear()

    def excluded(self, params: Iterable[torch.Tensor]) -> set[int]:
        """The serials to leave out of activation memory: every buffer a parameter gradient was
        summed in (the engine's out-of-place sums of those included) and the final ``p.grad``s."""
        assert self.tracker is not None
        tracker = self.tracker
        out = set(self.serials)
        for p in params:
            if p.grad is not None and (serial := tracker.serial(p.grad)) is not None:
                out.add(serial)
        return gradient_sums(out, tracker.adds)

    def _pre(self, grads: Any) -> None:
        if self.tracker is None:
            return
        for g in grads:
            if isinstance(g, torch.Tensor):
                serial = self.tracker.serial(g)
                if serial is not None:
                    self.serials.add(serial)
                phase = self.tracker.phase
                self.done[phase] = self.done.get(phase, 0) + g.numel() * g.element_size()
