"""Type checks at the public entries: what was given, what is expected, and how to get it."""

from __future__ import annotations

import os
from typing import Any

from checkpoint_solver.errors import InvalidArgumentError

__all__ = ["expect_module", "expect_path", "expect_problem", "expect_schedule", "given"]


def given(value: Any) -> str:
    """A short description of `value` for messages: its type and a clipped repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, bytes, os.PathLike))


def expect_problem(value: Any, where: str) -> None:
    """`value` must be a Chain or a Graph."""
    from checkpoint_solver.problem import Chain, Graph

    if isinstance(value, (Chain, Graph)):
        return
    if _is_path(value):
        raise InvalidArgumentError(
            f"{where} takes a problem (Chain or Graph), got the path {value!r}; load it first: "
            f"cs.load_problem(path) (or cs.Profile.load(path).chain for a saved profile)"
        )
    if type(value).__name__ == "Profile":
        raise InvalidArgumentError(
            f"{where} takes a problem (Chain or Graph), got a Profile; pass profile.chain (block "
            f"level) or profile.graph (op level)"
        )
    raise InvalidArgumentError(
        f"{where} takes a problem (Chain or Graph), got {given(value)}; build one with "
        f"cs.profile(model, inputs).chain or load one with cs.load_problem(path)"
    )


def expect_schedule(value: Any, where: str) -> None:
    """`value` must be a Schedule."""
    from checkpoint_solver.schedule import Schedule

    if isinstance(value, Schedule):
        return
    if _is_path(value):
        raise InvalidArgumentError(
            f"{where} takes a Schedule, got the path {value!r}; load it first: "
            f"cs.load_schedule(path)"
        )
    raise InvalidArgumentError(
        f"{where} takes a Schedule, got {given(value)}; make one with cs.solve(problem, budget) "
        f"or load one with cs.load_schedule(path)"
    )


def expect_module(value: Any, where: str) -> None:
    """`value` must be a torch.nn.Module (imports torch)."""
    from torch import nn

    if isinstance(value, nn.Module):
        return
    hint = (
        "build the model first (e.g. MyModel(config)); checkpoint_solver does not load models by name"
        if isinstance(value, str)
        else "pass the torch.nn.Module you train"
    )
    raise InvalidArgumentError(f"{where} takes a torch.nn.Module, got {given(value)}; {hint}")


def expect_path(value: Any, where: str) -> None:
    """`value` must be a file path (str or os.PathLike)."""
    if isinstance(value, (str, os.PathLike)):
        return
    raise InvalidArgumentError(
        f"{where} takes a file path (str or pathlib.Path), got {given(value)}"
    )
