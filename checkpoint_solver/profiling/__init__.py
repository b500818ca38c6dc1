"""Profiling: turn a torch model into a `Chain` (and an op-level `Graph`) with measured time,
memory and FLOPs.

`Profile` and `load_profile` are torch-free; `profile` imports torch when called.
"""

from __future__ import annotations

from typing import Any

from checkpoint_solver.problem.profile import Profile, StageInfo, load_profile

__all__ = ["Profile", "StageInfo", "load_profile", "profile"]


def profile(model: Any, example_inputs: Any, **kwargs: Any) -> Profile:
    """Profile `model` on `example_inputs`; see `checkpoint_solver.profiling.chain.profile`."""
    from checkpoint_solver.profiling.chain import profile as _profile

    return _profile(model, example_inputs, **kwargs)
