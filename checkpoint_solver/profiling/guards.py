"""Python reads of tensor values while a region is traced, made safe to replay.

`capture_region` traces the joint graph on the real tensors, so the model's code runs as eager
runs it: a library that picks another path for traced tensors (Hugging Face's masking code builds
an explicit mask and repeats the KV heads when it sees a fake tensor, where eager calls the fused
causal kernel) takes eager's path, and the replay runs the kernels eager runs.

Real tensors let Python read values (``if mask.all():``, ``n = int(lengths.max())``). Such a read
fixes one branch of the model's code into the graph, right for inputs like the traced ones only:

- A read that dispatches a value-returning op (``bool``, ``int``, ``float``, ``.item()`` go
  through ``aten._local_scalar_dense``; ``torch.equal``; ``Tensor.is_nonzero``) stays in the
  graph as a node. Its value at capture is recorded here, with the user's line, and the replay
  checks it (`check`): another value raises `ReplayError` naming the line, never a silent
  replay of the wrong branch.
- A read that leaves no node (``.tolist()``, ``.numpy()``, ``__array__``, a data pointer) could
  not be checked, so tracing refuses it (`ProfilingError` naming the line); the profile keeps its
  chain.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from checkpoint_solver.errors import ProfilingError, ReplayError

__all__ = [
    "GUARD_OPS",
    "Guard",
    "Recording",
    "UnguardedRead",
    "check",
    "guard_nodes",
    "user_line",
]

_aten = torch.ops.aten
# Ops whose Python result is read from tensor values: they stay in the graph and are checked.
GUARD_OPS = frozenset(
    {_aten._local_scalar_dense.default, _aten.equal.default, _aten.is_nonzero.default}
)
# Tensor methods that hand values to Python without an op the graph would keep.
_UNGUARDED = frozenset(
    {"tolist", "numpy", "__array__", "__dlpack__", "data_ptr", "untyped_storage", "storage"}
)
_OURS = (str(Path(torch.__file__).parent), str(Path(__file__).parents[1]))


def user_line(frames: list[traceback.FrameSummary]) -> str:
    """ " at FILE:LINE in FUNC: `code`" for the innermost of `frames` outside torch and this
    package (a stack, or an exception's ``traceback.extract_tb``)."""
    mine = [f for f in frames if not f.filename.startswith(_OURS)]
    if not mine:
        return ""
    f = mine[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" at {f.filename}:{f.lineno} in {f.name}:{code}"


class UnguardedRead(ProfilingError):
    """The region reads tensor values in Python in a way no replay could check."""


@dataclass(frozen=True)
class Guard:
    """A value the traced code read, as it was at capture, and where the model read it."""

    value: Any
    where: str


class _Reads(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _UNGUARDED:
            raise UnguardedRead(
                f"`Tensor.{name}()` hands a tensor's values to Python{user_line(traceback.extract_stack())}"
                f", which a captured graph cannot check at replay: no op-level capture "
                f"(a chain schedule still works; a value read with bool(), int() or .item() "
                f"instead is captured and checked)"
            )
        return func(*args, **(kwargs or {}))


class _Values(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.guards: list[Guard] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in GUARD_OPS:
            self.guards.append(Guard(out, user_line(traceback.extract_stack())))
        return out


class Recording:
    """``with Recording() as reads:`` around a real-tensor trace: refuses unguarded reads and
    lists, in trace order, the guarded ones (`reads.guards`)."""

    def __init__(self) -> None:
        self._reads = _Reads()
        self._values = _Values()

    @property
    def guards(self) -> list[Guard]:
        return self._values.guards

    def __enter__(self) -> Recording:
        self._values.__enter__()
        self._reads.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._reads.__exit__(*exc)
        self._values.__exit__(*exc)


def guard_nodes(gm: fx.GraphModule, guards: list[Guard]) -> dict[fx.Node, Guard]:
    """The graph's value-reading nodes, in graph (= trace) order, with the recorded values."""
    nodes = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in GUARD_OPS]
    if len(nodes) != len(guards):
        raise ProfilingError(
            f"the trace read {len(guards)} tensor values in Python but its graph keeps "
            f"{len(nodes)} such reads; op-level capture cannot check them at replay"
        )
    return dict(zip(nodes, guards, strict=True))


def check(node: fx.Node, value: Any, guard: Guard) -> None:
    """Raise `ReplayError` when a replayed read differs from the capture's."""
    same = value == guard.value
    if isinstance(same, bool) and (same or (value != value and guard.value != guard.value)):
        return  # equal, or NaN both times
    raise ReplayError(
        f"the model's code read a tensor value{guard.where} that was {guard.value!r} when its "
        f"graph was captured and is {value!r} for this call ({node.target}): the captured graph "
        f"holds the branch the capture took, so it cannot replay this input; profile with inputs "
        f"like these (cs.profile) and apply again, or use a chain schedule"
    )
