"""Whole-step budgets on graphs: which graph solvers count the model states op by op (the MILP
per stage and node, the greedy per stage, hierarchical through its chain DP), and how the
others are run (at the budget less the most the states add to any op: valid, and exactly what a
user subtracting them by hand does). See `checkpoint_solver.problem.states`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.solvers._registry import SolverSpec

if TYPE_CHECKING:
    from checkpoint_solver.solvers._plans import OpGraph

__all__ = [
    "GRAPH_STEP_AWARE",
    "graph_margin",
    "graph_step_min_budget",
    "graph_step_solve",
    "stage_states",
    "step_terms",
]

# Graph solvers that take ``scope="step"`` and count the model states op by op.
GRAPH_STEP_AWARE = frozenset({"hierarchical", "ilp", "greedy", "auto"})


def graph_margin(graph: Graph) -> int:
    """The most the model states add to any op's memory."""
    st = graph.states
    assert st is not None
    return (
        st.fixed_bytes
        + (max(st.grads, default=0) if st.accumulate else st.grad_bytes)
        + sum(w[2] for w in st.windows)
    )


def graph_step_solve(
    spec: SolverSpec, graph: Graph, budget_bytes: int, options: dict[str, Any]
) -> Schedule:
    """`spec`'s schedule for the whole step of `graph` within `budget_bytes`."""
    from checkpoint_solver.simulation import simulate_ops

    if spec.name in GRAPH_STEP_AWARE:
        schedule: Schedule = spec.fn(graph, budget_bytes, scope="step", **options)
        return schedule
    margin = graph_margin(graph)
    if budget_bytes - margin < 1:
        raise InfeasibleBudgetError(budget_bytes, None, spec.name)
    try:
        schedule = spec.fn(graph, budget_bytes - margin, **options)
    except InfeasibleBudgetError as exc:
        low = None if exc.min_budget_bytes is None else exc.min_budget_bytes + margin
        raise InfeasibleBudgetError(budget_bytes, low, spec.name) from None
    report = simulate_ops(graph, schedule.ops, scope="step")
    note = (
        f"whole-step budget: {spec.name} does not count the model states op by op, so it was "
        f"solved at the budget less the most they add to any op ({margin} bytes: parameters, "
        f"optimizer state, every gradient); whole-step peak {report.peak_bytes} bytes"
    )
    return schedule.replace(
        budget_bytes=budget_bytes,
        scope="step",
        predicted=dataclasses.replace(schedule.predicted, peak_bytes=report.peak_bytes),
        notes=(schedule.notes + "; " if schedule.notes else "") + note,
    )


def graph_step_min_budget(spec: SolverSpec, graph: Graph, options: dict[str, Any]) -> int:
    """`spec`'s least whole-step budget for `graph` (before the optimizer step's floor)."""
    if spec.name in GRAPH_STEP_AWARE:
        return int(spec.min_budget(graph, scope="step", **options))
    return int(spec.min_budget(graph, **options)) + graph_margin(graph)


def step_terms(graph: Graph, g: OpGraph) -> tuple[int, int, Callable[[int, int], int]]:
    """For a whole step in `g`'s order: the bytes held throughout (model states), what the
    states add to an op at most (to run a solver by hand), and per (stage t, node k) the
    gradients made by then: node i's from stage i on (its first computation), accumulating
    only while node t runs; a shared gradient's second copy over its window's stages."""
    st = graph.states
    assert st is not None
    n = g.n
    pos = {v: p for p, v in enumerate(g.nodes)}
    grads = [st.grads[v] for v in g.nodes]
    before = [0] * (n + 1)
    for t in range(n):
        before[t + 1] = before[t] + (0 if st.accumulate else grads[t])
    window = [0] * (n + 1)
    for first, last, nbytes in st.windows:
        if first in pos and last in pos:
            a, b = sorted((pos[first], pos[last]))
            window[a] += nbytes
            window[b + 1] -= nbytes
    for t in range(n):
        window[t + 1] += window[t]

    def extra(t: int, k: int) -> int:
        return before[t] + (grads[t] if k == t else 0) + window[t]

    return st.fixed_bytes, graph_margin(graph), extra


def stage_states(graph: Graph, g: OpGraph) -> list[int]:
    """Per stage t of `g`'s order, the most the model states add to any op of it: the states
    held throughout and the gradients made by then, node t's included (the greedy's per-stage
    budget is the budget less this)."""
    fixed, _, extra = step_terms(graph, g)
    return [fixed + extra(t, t) for t in range(g.n)]
