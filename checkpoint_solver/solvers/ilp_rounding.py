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

from dataclasses import dataclass

import numpy as np

from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Schedule, Status
from checkpoint_solver.solvers import _milp
from checkpoint_solver.solvers._deadline import Deadline, OutOfTime
from checkpoint_solver.solvers._options import SolverOptions
from checkpoint_solver.solvers._plans import (
    BoolMatrix,
    OpGraph,
    fix_no_recompute,
    optimal_r,
    plan_peak,
    prune_plan,
    require_working_set,
    schedule_from_plan,
)
from checkpoint_solver.solvers.graph_greedy import greedy_fallback, min_budget_over
from checkpoint_solver.solvers.ilp import (
    _Candidate,
    _check_options,
    _check_order,
    _greedy_candidates,
    _orders,
)

__all__ = ["min_budget_rounding", "solve_ilp_rounding"]

_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _rounded_plans(
    g: OpGraph, model: _milp.MilpModel, x: np.ndarray, deadline: Deadline
) -> list[tuple[BoolMatrix, BoolMatrix]]:
    """The plans rounded at each threshold, as many as the deadline leaves time for (one at
    least, from the middle threshold out)."""
    n = g.n
    frac = np.zeros((n, n))
    for (t, i), c in model.s_col.items():
        frac[t, i] = x[c]
    plans: list[tuple[BoolMatrix, BoolMatrix]] = []
    for tau in sorted(_THRESHOLDS, key=lambda v: abs(v - 0.5)):
        if plans and deadline.expired():
            break
        S = frac >= tau
        R, S = fix_no_recompute(g, optimal_r(g, S), S)
        plans.append(prune_plan(g, R, S))
    return plans


@dataclass(frozen=True)
class RoundingOptions(SolverOptions):
    """``ilp-rounding``'s options (see `solve_ilp_rounding`)."""

    backend: str = "highs"
    budget_factors: tuple[float, ...] = (1.0, 0.9, 0.8)
    time_limit: float | None = None
    threads: int | None = None
    order: str = "given"

    def check(self) -> None:
        _check_options(self.backend, self.time_limit, 0.0, self.threads)
        factors = self.budget_factors
        if (
            not isinstance(factors, (tuple, list))
            or not factors
            or any(isinstance(f, bool) or not isinstance(f, (int, float)) for f in factors)
            or any(not 0 < f <= 1 for f in factors)
        ):
            raise InvalidOptionError(f"budget_factors={factors!r} must be numbers in (0, 1]")
        _check_order(self.order)


def solve_ilp_rounding(
    graph: Graph,
    budget_bytes: int,
    /,
    *,
    backend: str = "highs",
    budget_factors: tuple[float, ...] = (1.0, 0.9, 0.8),
    time_limit: float | None = None,
    threads: int | None = None,
    order: str = "given",
) -> Schedule:
    """LP relaxation + rounding; status ``heuristic`` with the LP lower bound and the gap to it.

    `order` as for ``ilp``: ``"search"`` solves the LP in a searched low-peak topological order and
    runs the greedy in both orders; the LP bound holds in its own order, so a schedule from the
    other order reports the trivial bound. A greedy schedule that computes every node once is
    returned as ``optimal`` without any LP.

    Raises
    ------
    InfeasibleBudgetError
        When the LP proves no schedule fits, or no rounded plan (nor the greedy) fits.
    """
    # Long: the LP, its roundings and the greedy candidates share the deadline and the candidate
    # list.
    RoundingOptions(
        backend=backend,
        budget_factors=budget_factors,
        time_limit=time_limit,
        threads=threads,
        order=order,
    )
    _milp.require_backend(backend)
    deadline = Deadline(time_limit)
    orders = _orders(graph, order)
    g, where = orders[0]
    require_working_set(g, budget_bytes, "ilp-rounding")
    options: dict[str, object] = {"backend": backend, "budget_factors": list(budget_factors)}
    if order != "given":
        options["order"] = order
    trivial = graph.store_all_time
    if g.n == 0:
        empty = (np.zeros((0, 0), bool), np.zeros((0, 0), bool))
        return schedule_from_plan(
            graph,
            g,
            budget_bytes,
            empty,
            solver="ilp-rounding",
            options=options,
            status=Status.OPTIMAL,
            lower_bound=0.0,
            notes="no op nodes",
        )
    # The greedy in every order, then the rounded plans.
    candidates = _greedy_candidates(orders, budget_bytes)
    if once := next((c for c in candidates if c.each_node_once), None):
        return schedule_from_plan(
            graph,
            once.g,
            budget_bytes,
            once.plan,
            solver="ilp-rounding",
            options=options,
            status=Status.OPTIMAL,
            lower_bound=trivial,
            notes="every node computed once (the greedy's schedule): optimal for any schedule, no "
            "LP needed" + (f"; {once.where}" if once.where else ""),
        )
    # One clock for the whole solve: the model is built once (the budget factors move only the
    # memory columns' bounds), each LP gets what is left, and the rounding stops when it is up.
    bound = trivial
    stopped = ""
    base: _milp.MilpModel | None = None
    try:
        base = _milp.build(g, budget_bytes, deadline=deadline)
    except OutOfTime:
        stopped = f"time_limit={time_limit} s ran out while building the LP ({g.n} op nodes)"
    for factor in budget_factors:
        if base is None:
            break
        if deadline.expired():
            stopped = f"time_limit={time_limit} s ran out before the LP at factor {factor}"
            break
        model = (
            base if factor == 1.0 else base.with_budget_factor(factor, budget_bytes, g.base_bytes)
        )
        lp = _milp.run(
            model, backend, time_limit=deadline.left(), rel_gap=0.0, threads=threads, relax=True
        )
        if factor == 1.0:
            if lp.status == _milp.MilpStatus.INFEASIBLE and len(orders) == 1:
                raise InfeasibleBudgetError(
                    budget_bytes,
                    min_budget_over(orders),
                    "ilp-rounding",
                    hint="the LP relaxation proves no schedule with first computations in this "
                    "order fits",
                )
            if lp.objective is not None:
                bound = max(bound, lp.objective)
        if lp.x is not None:
            candidates += [
                _Candidate("rounded", g, plan, where)
                for plan in _rounded_plans(g, model, lp.x, deadline)
            ]
    fitting = [c for c in candidates if plan_peak(c.g, *c.plan) <= budget_bytes]
    if not fitting:
        raise InfeasibleBudgetError(
            budget_bytes,
            min_budget_over(orders),
            "ilp-rounding",
            hint="no rounded plan fits (the greedy's least budget always does); try ilp, which "
            "searches exactly" + (f"; {stopped}" if stopped else ""),
        )
    best = min(fitting, key=lambda c: c.time)
    in_lp_order = best.g is g
    solved_lp = bound > trivial or any(c.source == "rounded" for c in candidates)
    lp_note = f"LP bound {bound:.6g}" if solved_lp else "no LP solved, the trivial bound"
    sched = schedule_from_plan(
        graph,
        best.g,
        budget_bytes,
        best.plan,
        solver="ilp-rounding",
        options=options,
        status=Status.HEURISTIC,
        lower_bound=bound if in_lp_order else trivial,
        notes=f"LP relaxation + rounding over {len(candidates)} candidate plans; {lp_note}"
        + (f"; {stopped}" if stopped else "")
        + ("" if in_lp_order else " (in the LP's order; this plan is from the other order)")
        + (f"; {best.where}" if best.where else ""),
    )
    # The greedy's own schedule (its eviction simulation too) when it is faster: never worse.
    greedy = greedy_fallback(
        graph,
        budget_bytes,
        "ilp-rounding",
        options,
        f"the greedy's schedule beat every rounded plan ({lp_note}"
        + (f"; {stopped}" if stopped else "")
        + ")",
    )
    if greedy is not None and greedy.predicted.compute_time < sched.predicted.compute_time:
        return greedy.replace(lower_bound=sched.lower_bound, gap=_gap(greedy, sched.lower_bound))
    return sched


def _gap(sched: Schedule, bound: float | None) -> float:
    t = sched.predicted.compute_time
    return (t - bound) / t if bound is not None and t > 0 else 0.0


def min_budget_rounding(
    graph: Graph,
    /,
    *,
    backend: str = "highs",
    budget_factors: tuple[float, ...] = (1.0, 0.9, 0.8),
    time_limit: float | None = None,
    threads: int | None = None,
    order: str = "given",
) -> int:
    """Rounding always has the greedy plan (in each order it runs) to fall back on: the least of
    the greedy's minima."""
    RoundingOptions(
        backend=backend,
        budget_factors=budget_factors,
        time_limit=time_limit,
        threads=threads,
        order=order,
    )
    return min_budget_over(_orders(graph, order))
