"""How solvers declare and check their options: `SolverOptions`, one dataclass per solver, and
the one check of each kind of value (integers: slot counts, budgets, threads, points; booleans)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from checkpoint_solver.errors import InvalidOptionError
from checkpoint_solver.problem.states import SCOPES

__all__ = ["NoOptions", "SolverOptions", "bool_option", "int_option", "scope_option"]


def int_option(
    name: str,
    value: Any,
    *,
    low: int = 1,
    high: int | None = None,
    allow_none: bool = False,
    hint: str = "",
) -> None:
    """Raise `InvalidOptionError` unless `value` is an integer in ``low..high`` (``True`` and
    ``False`` are not integers here), or None when `allow_none`. The message names the option,
    the value, the range and `hint` (what the option means, its default)."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        want = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InvalidOptionError(
            f"{name}={value!r} must be an integer {want}"
            + (" or None" if allow_none else "")
            + (f" {hint}" if hint else "")
        )


def bool_option(name: str, value: Any) -> None:
    """Raise `InvalidOptionError` unless `value` is True or False (1, 0 and None are not)."""
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{name}={value!r} must be True or False")


@dataclass(frozen=True)
class SolverOptions:
    """A solver's options, one frozen dataclass per solver: its fields are the options with their
    defaults (the registry lists them from here), and `check` validates every one. The solver's
    `solve`, `min_budget` and `tradeoff` each build it from their keyword arguments first, so an
    option is checked by one piece of code, the same way from every entry."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise `InvalidOptionError` naming the first bad option (none here: no options)."""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Option names with their defaults."""
        return {f.name: f.default for f in fields(cls)}


@dataclass(frozen=True)
class NoOptions(SolverOptions):
    """The options of a solver that has none."""


def scope_option(value: Any) -> None:
    """A solver's own `scope` is ``"activations"`` or ``"step"`` (`checkpoint_solver.solve`
    resolves ``"auto"`` and None before calling it)."""
    if not isinstance(value, str) or value not in SCOPES:
        raise InvalidOptionError(
            f"scope={value!r}: a solver's scope is 'activations' or 'step' "
            f"(checkpoint_solver.solve also takes 'auto')"
        )
