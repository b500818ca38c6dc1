"""Runtime: replay a chain schedule while a torch model trains, and the baselines it is measured
against. `ReplayPlan` is torch-free; everything else imports torch when first used.

Example::

    import checkpoint_solver as cs
    from checkpoint_solver import models

    model, inputs = models.gpt()
    prof = cs.profile(model, inputs)
    sched = cs.solve(prof.chain, prof.chain.x[1] * 12, "dp")
    cs.apply(model, sched, prof)
    model(*inputs).backward()  # replays the schedule
"""

from __future__ import annotations

from typing import Any

from checkpoint_solver.runtime.plan import ReplayPlan

__all__ = ["ReplayPlan", "apply", "baselines", "is_applied", "last_trace", "remove"]

_LAZY = {
    "apply": "checkpoint_solver.runtime.executor",
    "remove": "checkpoint_solver.runtime.executor",
    "is_applied": "checkpoint_solver.runtime.executor",
    "last_trace": "checkpoint_solver.runtime.executor",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "baselines":
        return importlib.import_module("checkpoint_solver.runtime.baselines")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
