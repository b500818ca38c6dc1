"""Whole-step budgets on graphs: which graph solvers count the model states op by op, and how
the others are run (at the budget less the most the states add to any op: valid, and exactly
what a user subtracting them by hand does). See `checkpoint_solver.problem.states`."""

from __future__ import annotations

import dataclasses
from typing import Any

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.solvers._registry import SolverSpec

__all__ = ["GRAPH_STEP_AWARE", "graph_margin", "graph_step_min_budget", "graph_step_solve"]

# Graph solvers that take ``scope="step"`` and count the model states op by op.
GRAPH_STEP_AWARE = frozenset({"hierarchical", "ilp", "auto"})


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
