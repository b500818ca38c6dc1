"""``greedy``: a fast heuristic for graphs, the MILP's warm start and its answer at ``time_limit=0``.

Start from keeping every value until its last use (no recomputation); then walk the stages in
order and, while a stage exceeds the budget, stop carrying the value with the least compute per
byte into it (it is recomputed where it is next needed, Checkmate's closed-form R). Its lower bound
is the trivial one: every node is computed at least once.
"""

from __future__ import annotations

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Schedule, Status
from checkpoint_solver.solvers._stages import OpGraph, greedy_plan, plan_peak

__all__ = ["min_budget_greedy", "solve_greedy"]


def solve_greedy(graph: Graph, budget_bytes: int, /) -> Schedule:
    """Greedy eviction schedule within `budget_bytes`.

    Raises
    ------
    InfeasibleBudgetError
        When the greedy cannot fit the budget (``min_budget_bytes`` is its own minimum).
    """
    from checkpoint_solver.solvers.ilp import schedule_from_plan

    g = OpGraph.of(graph)
    plan = greedy_plan(g, budget_bytes)
    if plan is None:
        raise InfeasibleBudgetError(
            budget_bytes, min_budget_greedy(graph), "greedy", hint="or try ilp"
        )
    return schedule_from_plan(
        graph,
        g,
        budget_bytes,
        plan,
        solver="greedy",
        options={},
        status=Status.HEURISTIC,
        lower_bound=graph.store_all_time,
        notes="greedy eviction; lower bound: every node computed once",
    )


def min_budget_greedy(graph: Graph, /) -> int:
    """The least budget at which the greedy finds a schedule (bisection on its own success)."""
    g = OpGraph.of(graph)
    from checkpoint_solver.solvers._stages import keep_all_plan

    hi = plan_peak(g, *keep_all_plan(g))
    lo = g.base_bytes
    if greedy_plan(g, hi) is None:  # pragma: no cover - keeping everything always fits its own peak
        raise AssertionError("greedy failed at its store-all peak")
    # The greedy's success is monotone in practice but not by construction: search the smallest
    # budget that works, then confirm it.
    while lo < hi:
        mid = (lo + hi) // 2
        if greedy_plan(g, mid) is not None:
            hi = mid
        else:
            lo = mid + 1
    return hi
