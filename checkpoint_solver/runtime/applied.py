"""What is applied to a model, in one record: a chain schedule, a graph schedule or a baseline.

Every way of changing how a model trains (`checkpoint_solver.runtime.executor.apply`,
`checkpoint_solver.runtime.oplevel.apply_graph`, the baselines of
`checkpoint_solver.runtime.baselines`) attaches one `Applied` to the model, so each refuses a
model that already has one of the others, and `remove`, `is_applied` and `last_trace` answer
for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from checkpoint_solver.errors import ApplyError

__all__ = [
    "Applied",
    "attach",
    "check_free",
    "detach",
    "get",
    "refuse_compiled",
    "refuse_compiling",
]

_ATTR = "_checkpoint_solver_applied"

Kind = Literal["chain", "graph", "baseline", "policy"]


@dataclass(eq=False)
class Applied:
    """One applied schedule or baseline: its kind, its own state (the executor, the compiled
    graph replay, the patched blocks), how to undo it, and the ops its last step ran (None when
    not recorded)."""

    kind: Kind
    state: Any
    undo: Callable[[], None]
    trace: Callable[[], list[str] | None] = lambda: None


def get(model: nn.Module) -> Applied | None:
    """The record attached to `model`, or None."""
    record = getattr(model, _ATTR, None)
    return record if isinstance(record, Applied) else None


def check_free(model: nn.Module) -> None:
    """Refuse a model that already has a schedule or a baseline applied, naming which."""
    if (old := get(model)) is not None:
        what = {"baseline": "a baseline", "policy": "an exported torch policy"}.get(
            old.kind, f"a {old.kind} schedule"
        )
        raise ApplyError(
            f"{type(model).__name__} already has {what} applied; call "
            f"checkpoint_solver.runtime.remove(model) before applying another"
        )


def attach(model: nn.Module, record: Applied) -> None:
    """Attach `record`; a model that already has one is refused (`check_free`)."""
    check_free(model)
    object.__setattr__(model, _ATTR, record)


def detach(model: nn.Module, kind: Kind | None = None) -> Applied:
    """Undo and remove the record (of `kind`, when given); none is an `ApplyError`."""
    record = get(model)
    if record is None or (kind is not None and record.kind != kind):
        what = "baseline" if kind == "baseline" else "schedule"
        raise ApplyError(f"{type(model).__name__} has no {what} applied")
    record.undo()
    object.__delattr__(model, _ATTR)
    return record


_EXPORT = (
    "to train under torch.compile, export the schedule as torch's own checkpoint policies: "
    "policy = cs.export_policy(model, schedule, profile, inputs); policy.apply(model); "
    "torch.compile(model)"
)


def refuse_compiled(model: nn.Module) -> None:
    """Refuse a model torch.compile wrapped (``torch.compile(model)`` returns an
    ``OptimizedModule``): our executors replay the schedule in Python, which compile cannot trace."""
    if hasattr(model, "_orig_mod") and type(model).__name__ == "OptimizedModule":
        raise ApplyError(f"cs.apply got a torch.compile'd model; {_EXPORT}")


def refuse_compiling(model: nn.Module) -> None:
    """Called where an applied model's stages run: refuse to be traced by torch.compile (the
    executor's saved-tensor hooks and reruns are Python state compile cannot keep)."""
    _raise_if_compiling(torch.compiler.is_compiling(), type(model).__name__)


@torch.compiler.disable  # type: ignore[untyped-decorator]
def _raise_if_compiling(compiling: bool, name: str) -> None:
    # Raised while compile traces, the error would only make it fall back frame by frame into a
    # mix of compiled and eager code; from a function compile does not trace (it is handed
    # ``is_compiling()`` as traced), it reaches the caller.
    if compiling:
        raise ApplyError(
            f"{name} has a schedule applied with cs.apply, whose executor cannot run under "
            f"torch.compile; {_EXPORT}"
        )
