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
from dataclasses import dataclass

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Compute, Free, Schedule, Status
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._dtr import dtr_candidates
from checkpoint_solver.solvers._heuristics import greedy_plan
from checkpoint_solver.solvers._options import SolverOptions, scope_option
from checkpoint_solver.solvers._order import low_peak_order, reorder, store_all_peak
from checkpoint_solver.solvers._plans import OpGraph, keep_all_plan, plan_peak

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


@dataclass(frozen=True)
class GreedyOptions(SolverOptions):
    """``greedy``'s options (see `solve_greedy`)."""

    scope: str = "activations"

    def check(self) -> None:
        scope_option(self.scope)


def solve_greedy(graph: Graph, budget_bytes: int, /, *, scope: str = "activations") -> Schedule:
    """Greedy eviction schedule within `budget_bytes`.

    With ``scope="step"`` (set by `checkpoint_solver.solve` for a graph with `Graph.states`),
    each stage's budget is the budget less the model states at that stage (the states held
    throughout and the parameter gradients made by then: `_step.stage_states`), so evictions
    follow the gradients as the backward makes them; the simulator's whole-step peak, the
    optimizer step included, judges the result.

    Raises
    ------
    InfeasibleBudgetError
        When the greedy cannot fit the budget (``min_budget_bytes`` is its own minimum).
    """
    GreedyOptions(scope)
    candidates = _candidates(graph, budget_bytes, scope)
    if not candidates:
        low = min_budget_greedy(graph, scope=scope)
        raise InfeasibleBudgetError(budget_bytes, low, "greedy", hint="or try ilp")
    return min(candidates, key=lambda s: (s.predicted.compute_time, s.predicted.peak_bytes))


def _candidates(graph: Graph, budget_bytes: int, scope: str) -> list[Schedule]:
    """Every schedule the greedy's heuristics find within `budget_bytes`, in every order."""
    from checkpoint_solver.simulation import simulate_ops
    from checkpoint_solver.solvers._plans import schedule_from_plan
    from checkpoint_solver.solvers._step import stage_states

    step = scope == "step"
    candidates = []
    orders = op_graph_orders(graph)
    for g, where in orders:
        suffix = f"; {where}" if where else ""
        less = stage_states(graph, g) if step else None
        runs = dtr_candidates(g, budget_bytes, less)
        plan = greedy_plan(g, budget_bytes, runs, less)
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
                    scope=scope,
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
                    scope=scope,
                )
            )
    if step:
        # The stages' budgets bound every op; the optimizer step after the last is the
        # simulator's to judge.
        candidates = [
            c
            for c in candidates
            if simulate_ops(graph, list(c.ops), budget_bytes=budget_bytes, scope="step").valid
        ]
    return candidates


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
def min_budget_greedy(graph: Graph, /, *, scope: str = "activations") -> int:
    """The least budget at which the greedy finds a schedule (bisection on its own success, in
    each order it tries); for ``scope="step"`` the least whole-step budget."""
    GreedyOptions(scope)
    if scope != "step":
        return min_budget_over(op_graph_orders(graph))
    from checkpoint_solver.solvers._step import graph_margin, stage_states

    # Per order, bisect on the greedy's success with each stage's budget less its states (as
    # `min_budget_in_order`), between the activation minimum (over the orders) plus the states
    # held throughout and that minimum plus every state (what subtracting them by hand needs); then confirm with the simulator, which
    # also judges the optimizer step.
    st = graph.states
    assert st is not None
    act = min_budget_greedy(graph)  # the activation minimum over the orders (kept)
    found = []
    for g, _ in op_graph_orders(graph):
        less = stage_states(graph, g)
        lo, hi = act + st.fixed_bytes, act + graph_margin(graph)
        while greedy_plan(g, hi, None, less) is None:  # pragma: no cover - by hand fits
            hi += max(1, hi // 8)
        while lo < hi:
            mid = (lo + hi) // 2
            if greedy_plan(g, mid, None, less) is not None:
                hi = mid
            else:
                lo = mid + 1
        found.append(hi)
    from checkpoint_solver.problem import step_floor

    low = max(min(found), step_floor(graph))
    if _candidates(graph, low, "step"):
        return low
    failed, step = low, max(1, low // 256)  # the optimizer step or the ops need more
    while not _candidates(graph, failed + step, "step"):
        failed, step = failed + step, step * 2
    lo, hi = failed + 1, failed + step
    while lo < hi:
        mid = (lo + hi) // 2
        if _candidates(graph, mid, "step"):
            hi = mid
        else:
            lo = mid + 1
    return hi


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
