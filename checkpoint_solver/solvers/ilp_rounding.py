"""``ilp-rounding``: the MILP's LP relaxation with Checkmate's two-phase rounding.

1. Solve the LP relaxation at the budget: its value is a lower bound on every schedule's time.
2. Solve it again at tighter budgets (``budget_factors``, Checkmate's 0.9 "hack" among them), so
   the rounded schedules have room to fit.
3. Round each LP's retention matrix S at several thresholds; for each rounded S take the cheapest
   R in closed form (Checkmate's ``solve_r_opt``), and keep the fastest plan that fits the budget.
   The greedy heuristic's plan is a candidate too, so the answer is never worse than it.

For graphs too large for the MILP; the schedule reports the LP bound so the gap is visible.
"""

from __future__ import annotations

import numpy as np

from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Schedule, Status
from checkpoint_solver.solvers import _milp
from checkpoint_solver.solvers._stages import (
    BoolMatrix,
    OpGraph,
    fix_no_recompute,
    greedy_plan,
    optimal_r,
    plan_peak,
    plan_time,
    prune_plan,
)
from checkpoint_solver.solvers.ilp import _check_options, require_working_set, schedule_from_plan

__all__ = ["min_budget_rounding", "solve_ilp_rounding"]

_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _rounded_plans(
    g: OpGraph, model: _milp.MilpModel, x: np.ndarray
) -> list[tuple[BoolMatrix, BoolMatrix]]:
    n = g.n
    frac = np.zeros((n, n))
    for (t, i), c in model.s_col.items():
        frac[t, i] = x[c]
    plans = []
    for tau in _THRESHOLDS:
        S = frac >= tau
        R, S = fix_no_recompute(g, optimal_r(g, S), S)
        plans.append(prune_plan(g, R, S))
    return plans


def solve_ilp_rounding(
    graph: Graph,
    budget_bytes: int,
    /,
    *,
    backend: str = "highs",
    budget_factors: tuple[float, ...] = (1.0, 0.9, 0.8),
    time_limit: float | None = None,
    threads: int | None = None,
) -> Schedule:
    """LP relaxation + rounding; status ``heuristic`` with the LP lower bound and the gap to it.

    Raises
    ------
    InfeasibleBudgetError
        When the LP proves no schedule fits, or no rounded plan (nor the greedy) fits.
    """
    _check_options(backend, time_limit, 0.0, threads)
    if not budget_factors or any(not 0 < f <= 1 for f in budget_factors):
        raise InvalidOptionError(f"budget_factors={budget_factors!r} must be numbers in (0, 1]")
    g = OpGraph.of(graph)
    require_working_set(g, budget_bytes, "ilp-rounding")
    candidates: list[tuple[BoolMatrix, BoolMatrix]] = []
    heuristic = greedy_plan(g, budget_bytes) if g.n else None
    if heuristic is not None:
        candidates.append(heuristic)
    bound = graph.store_all_time
    for factor in budget_factors:
        model = _milp.build(g, budget_bytes, lp_budget_factor=factor)
        lp = _milp.run(
            model, backend, time_limit=time_limit, rel_gap=0.0, threads=threads, relax=True
        )
        if factor == 1.0:
            if lp.status == "infeasible":
                raise InfeasibleBudgetError(
                    budget_bytes,
                    None,
                    "ilp-rounding",
                    hint="the LP relaxation proves no schedule fits",
                )
            if lp.objective is not None:
                bound = max(bound, lp.objective)
        if lp.x is not None:
            candidates += _rounded_plans(g, model, lp.x)
    fitting = [p for p in candidates if plan_peak(g, *p) <= budget_bytes]
    if g.n == 0:
        fitting = [(np.zeros((0, 0), bool), np.zeros((0, 0), bool))]
    if not fitting:
        raise InfeasibleBudgetError(
            budget_bytes,
            None,
            "ilp-rounding",
            hint="no rounded plan fits; try ilp, which searches exactly, or raise the budget",
        )
    best = min(fitting, key=lambda p: plan_time(g, p[0]))
    return schedule_from_plan(
        graph,
        g,
        budget_bytes,
        best,
        solver="ilp-rounding",
        options={"backend": backend, "budget_factors": list(budget_factors)},
        status=Status.HEURISTIC,
        lower_bound=bound,
        notes=f"LP relaxation + rounding over {len(candidates)} candidate plans; LP bound {bound:.6g}",
    )


def min_budget_rounding(
    graph: Graph,
    /,
    *,
    backend: str = "highs",
    budget_factors: tuple[float, ...] = (1.0, 0.9, 0.8),
    time_limit: float | None = None,
    threads: int | None = None,
) -> int:
    """Rounding always has the greedy plan (in the graph's order) to fall back on: its minimum."""
    from checkpoint_solver.solvers.graph_greedy import min_budget_in_order

    return min_budget_in_order(OpGraph.of(graph))
