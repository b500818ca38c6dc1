"""Solver registry: names, the problem kinds each handles, option checking, dispatch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from checkpoint_solver.errors import UnknownOptionError, UnknownSolverError
from checkpoint_solver.problem import Problem
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.solvers._options import NoOptions, SolverOptions

__all__ = ["REGISTRY", "SolverFn", "SolverSpec", "get_spec", "register"]


# A solver is ``fn(problem, budget_bytes, /, *, option=default, ...) -> Schedule``; its
# keyword-only parameters are its options, the fields of its `SolverOptions` dataclass.
# ``min_budget(problem, /, *, same options) -> int``.
SolverFn: TypeAlias = Callable[..., Schedule]
MinBudgetFn: TypeAlias = Callable[..., int]


@dataclass(frozen=True, slots=True)
class SolverSpec:
    """One registered solver.

    Attributes
    ----------
    name : str
    kinds : tuple[str, ...]
        Problem kinds handled (``"chain"``, ``"graph"``).
    fn : SolverFn
        Keyword-only parameters of `fn` are the solver's options: the fields of `options_type`.
    min_budget : MinBudgetFn
        The least budget at which `fn` returns a schedule, for the same options.
    exact_min_budget : bool
        Whether `min_budget` is exact: at one byte less `fn` raises. Heuristics whose minimum
        is that of one of their candidates (``greedy``: the stage eviction's; ``hierarchical``:
        the least of its sampled DP points; ``ilp-rounding``: the greedy's; ``cpsat``: the least
        of its model's and the greedy's) may still find a schedule a little below it.
    guarantee : str
        One line: what the solver promises.
    requires : Callable[[Problem], str | None]
        Returns a reason when the solver cannot handle this particular problem (e.g. Revolve on a
        non-uniform chain), else ``None``.
    tradeoff : Callable | None
        ``fn(problem, budgets, /, **options) -> list[Schedule | None]`` when the solver can give
        many budgets from one run (``None`` for an infeasible budget).
    options_type : type[SolverOptions]
        The solver's options dataclass: the names, defaults and the one check `fn`, `min_budget`
        and `tradeoff` all run.
    """

    name: str
    kinds: tuple[str, ...]
    fn: SolverFn
    min_budget: MinBudgetFn
    guarantee: str
    requires: Callable[[Problem], str | None] = field(default=lambda problem: None)
    tradeoff: Callable[..., list[Schedule | None]] | None = None
    exact_min_budget: bool = True
    options_type: type[SolverOptions] = NoOptions

    @property
    def options(self) -> dict[str, Any]:
        """Option names with their defaults."""
        return self.options_type.defaults()

    def check_options(self, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise UnknownOptionError(
                f"solver {self.name!r} has no option {', '.join(map(repr, unknown))}; "
                f"its options are: {valid}"
            )


REGISTRY: dict[str, SolverSpec] = {}


def register(spec: SolverSpec) -> SolverSpec:
    """Add `spec` to the registry (names are unique)."""
    if spec.name in REGISTRY:
        raise ValueError(f"solver {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str, kind: str | None = None) -> SolverSpec:
    """Return the spec called `name`, checking it handles `kind`.

    Raises
    ------
    UnknownSolverError
        Listing the solvers that exist (for `kind`, when given).
    """
    if not isinstance(name, str) or name not in REGISTRY:
        names = sorted(n for n, s in REGISTRY.items() if kind is None or kind in s.kinds)
        for_kind = f" for {kind} problems" if kind else ""
        raise UnknownSolverError(
            f"unknown solver {name!r}; the solvers{for_kind} are: {', '.join(names)}"
        )
    spec = REGISTRY[name]
    if kind is not None and kind not in spec.kinds:
        names = sorted(n for n, s in REGISTRY.items() if kind in s.kinds)
        raise UnknownSolverError(
            f"solver {name!r} handles {' and '.join(spec.kinds)} problems, not {kind}; "
            f"for a {kind} use one of: {', '.join(names)}"
        )
    return spec
