"""Chain solvers on chains whose boundaries' values are known: solved with every boundary counting
the values that cross it, judged by the simulator, which counts each copy of a value once.

A profiled chain lists the tensors its boundaries are made of (`Chain.values`): a skip, a mask, an
encoder's output or an RNN's collected outputs is part of every boundary it crosses. The chain
solvers' own accounting (the DP's recursion, Revolve's and the periodic plans' closed forms) adds
up boundaries, so it counts such a value once per boundary held and over-counts: a schedule it
finds within a budget fits, but may leave memory unused. Here a chain solver is run at budgets
above the user's (a bisection) and the fastest schedule whose simulated peak still fits is kept;
below the solver's own minimum, its minimum-memory schedule is kept when its simulated peak fits.
The result carries the simulator's peak and says so.

No optimality is claimed for it: the solvers are optimal for their own accounting, and a schedule
that holds more boundaries than that accounting allows could be faster still.
"""

from __future__ import annotations

from typing import Any

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Chain, Problem
from checkpoint_solver.schedule import Schedule, Status
from checkpoint_solver.solvers._registry import SolverSpec

__all__ = ["has_values", "min_budget_exact", "solve_exact"]

# Bisection steps over the solver's budget: the last step is within 1/2**STEPS of the range.
STEPS = 8


def has_values(problem: Problem) -> bool:
    return problem.kind == "chain" and bool(problem.values)


def _additive_store_all(chain: Chain) -> int:
    from checkpoint_solver.solvers.store_all import min_budget_store_all

    return min_budget_store_all(chain)


def _attempt(
    spec: SolverSpec, chain: Chain, budget: int, options: dict[str, Any]
) -> tuple[Schedule, int] | None:
    try:
        sched = spec.fn(chain, budget, **options)
    except InfeasibleBudgetError:
        return None
    # `make_schedule` already gives chains with values the simulator's peak.
    return sched, sched.predicted.peak_bytes


def _faster(a: tuple[Schedule, int] | None, b: tuple[Schedule, int]) -> tuple[Schedule, int]:
    if a is None:
        return b
    ka = (a[0].predicted.compute_time, a[1])
    kb = (b[0].predicted.compute_time, b[1])
    return b if kb < ka else a


def min_budget_exact(spec: SolverSpec, chain: Chain, options: dict[str, Any]) -> int:
    """The simulated peak of the solver's schedule at its own minimum budget."""
    low = spec.min_budget(chain, **options)
    got = _attempt(spec, chain, low, options)
    return low if got is None else min(low, got[1])


def solve_exact(
    spec: SolverSpec, chain: Chain, budget_bytes: int, options: dict[str, Any]
) -> Schedule:
    """The fastest schedule `spec` gives at some budget whose simulated peak is within
    `budget_bytes` (see the module notes)."""
    best = _attempt(spec, chain, budget_bytes, options)
    low = budget_bytes
    if best is None:
        low = spec.min_budget(chain, **options)
        best = _attempt(spec, chain, low, options)
        if best is None or best[1] > budget_bytes:
            raise InfeasibleBudgetError(
                budget_bytes, min_budget_exact(spec, chain, options), spec.name
            )
    if best[1] > budget_bytes:  # a solver whose own accounting is not an upper bound
        raise InfeasibleBudgetError(budget_bytes, min_budget_exact(spec, chain, options), spec.name)
    used = low
    high = max(low, _additive_store_all(chain))
    top = _attempt(spec, chain, high, options) if high > low else None
    if top is not None and top[1] <= budget_bytes:
        best, used = _faster(best, top), high
    else:
        for _ in range(STEPS):
            if high - low <= 1:
                break
            mid = (low + high) // 2
            got = _attempt(spec, chain, mid, options)
            if got is not None and got[1] <= budget_bytes:
                low = mid
                if _faster(best, got) is got:
                    best, used = got, mid
            else:
                high = mid
    sched, peak = best
    note = (
        f"boundary values counted once per copy: solved by {spec.name} at {used} bytes (where "
        f"each boundary counts every value crossing it), simulated peak {peak} bytes; no "
        f"optimality claim in this accounting"
    )
    return sched.replace(
        budget_bytes=budget_bytes,
        status=Status.HEURISTIC,
        gap=None,
        lower_bound=None,
        notes=(sched.notes + "; " if sched.notes else "") + note,
    )
