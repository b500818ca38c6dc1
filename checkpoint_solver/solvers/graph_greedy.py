"""``greedy``: fast heuristics for graphs, the MILP's warm start and its answer at ``time_limit=0``.

Two candidates, the faster that fits wins: (1) stage eviction: start from keeping every value until
its last use, then, stage by stage, stop carrying the value with the least compute per byte until
the stage fits (it is recomputed where next needed, Checkmate's closed-form R); (2) a DTR-style
eviction simulation with Belady look-ahead (`checkpoint_solver.solvers._dtr`), as a general op
sequence. Both run in the graph's own order and, when one exists, in a topological order with a
lower store-all peak (`checkpoint_solver.solvers._order`): on random layered DAGs that alone can
bring every node computed once within budgets that need recomputation in the file's order. Its
lower bound is the trivial one: every node is computed at least once.
"""

from __future__ import annotations

import functools

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Compute, Free, Schedule, Status
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._dtr import dtr_candidates
from checkpoint_solver.solvers._order import low_peak_order, reorder, store_all_peak
from checkpoint_solver.solvers._stages import OpGraph, greedy_plan, keep_all_plan, plan_peak

__all__ = [
    "greedy_fallback",
    "min_budget_greedy",
    "min_budget_in_order",
    "min_budget_over",
    "op_graph_orders",
    "solve_greedy",
]


@functools.lru_cache(maxsize=16)
def op_graph_orders(graph: Graph) -> list[tuple[OpGraph, str]]:
    """The op graph in the graph's own order, then renumbered in a topological order with a lower
    store-all peak when the search finds one; each with a note naming the order. Kept for the
    last graphs asked about (the search is the greedy's slowest part, and a solver that solves one
    graph at several budgets asks again); callers do not change what it returns."""
    g = OpGraph.of(graph)
    out = [(g, "")]
    order = low_peak_order(g)
    if order != list(range(g.n)):
        out.append(
            (
                reorder(g, order),
                f"first computations in a searched topological order (store-all peak "
                f"{store_all_peak(g, order)} B, against {store_all_peak(g, range(g.n))} B in the "
                f"graph's own order)",
            )
        )
    return out


def solve_greedy(graph: Graph, budget_bytes: int, /) -> Schedule:
    """Greedy eviction schedule within `budget_bytes`.

    Raises
    ------
    InfeasibleBudgetError
        When the greedy cannot fit the budget (``min_budget_bytes`` is its own minimum).
    """
    from checkpoint_solver.solvers.ilp import schedule_from_plan

    candidates = []
    orders = op_graph_orders(graph)
    for g, where in orders:
        suffix = f"; {where}" if where else ""
        runs = dtr_candidates(g, budget_bytes)
        plan = greedy_plan(g, budget_bytes, runs)
        if plan is not None:
            candidates.append(
                schedule_from_plan(
                    graph,
                    g,
                    budget_bytes,
                    plan,
                    solver="greedy",
                    options={},
                    status=Status.HEURISTIC,
                    lower_bound=graph.store_all_time,
                    notes="stage eviction plan; lower bound: every node computed once" + suffix,
                )
            )
        for events, peak in runs:
            ops = [
                Compute(g.nodes[k]) if kind == "compute" else Free(g.nodes[k]) for kind, k in events
            ]
            time = float(sum(g.cost[k] for kind, k in events if kind == "compute"))
            candidates.append(
                make_schedule(
                    graph,
                    budget_bytes,
                    ops,
                    solver="greedy",
                    peak_bytes=peak,
                    compute_time=time,
                    status=Status.HEURISTIC,
                    gap=(time - graph.store_all_time) / time if time else 0.0,
                    lower_bound=graph.store_all_time,
                    notes="DTR-style eviction with look-ahead; lower bound: every node computed "
                    "once" + suffix,
                )
            )
    if not candidates:
        raise InfeasibleBudgetError(
            budget_bytes, min_budget_over(orders), "greedy", hint="or try ilp"
        )
    return min(candidates, key=lambda s: (s.predicted.compute_time, s.predicted.peak_bytes))


def greedy_fallback(
    graph: Graph, budget_bytes: int, solver: str, options: dict[str, object], why: str
) -> Schedule | None:
    """The greedy's schedule under another solver's name, for a solver whose own search ran out
    of time (status ``heuristic``, `why` in its notes), or None when the greedy does not fit."""
    try:
        sched = solve_greedy(graph, budget_bytes)
    except InfeasibleBudgetError:
        return None
    return sched.replace(solver=solver, options=dict(options), notes=f"{why}; {sched.notes}")


@functools.lru_cache(maxsize=16)
def min_budget_greedy(graph: Graph, /) -> int:
    """The least budget at which the greedy finds a schedule (bisection on its own success, in
    each order it tries)."""
    return min_budget_over(op_graph_orders(graph))


def min_budget_over(orders: list[tuple[OpGraph, str]]) -> int:
    """The greedy's least budget in any of `orders` (op graphs with notes, as from
    `op_graph_orders`)."""
    return min(min_budget_in_order(g) for g, _ in orders)


def min_budget_in_order(g: OpGraph) -> int:
    """The greedy's least budget with first computations in `g`'s order."""
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
