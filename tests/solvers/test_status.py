"""A status is a promise: ``optimal`` has gap 0, ``feasible`` has a gap and a lower bound."""

from __future__ import annotations

import pytest

import checkpoint_solver as cs
from checkpoint_solver.problem.synthetic import random_dag, transformer_chain

CHAIN = transformer_chain(6)
GRAPH = random_dag(14, seed=2)


def _check(sched: cs.Schedule) -> None:
    if sched.status is cs.Status.OPTIMAL:
        assert sched.gap == 0.0, (sched.solver, sched.gap)
    if sched.status is cs.Status.FEASIBLE:
        assert sched.gap is not None and sched.lower_bound is not None


@pytest.mark.parametrize("options", [{}, {"bound": False}, {"mem_slots": 7, "bound": False}])
def test_dp_status_keeps_its_promise(options: dict[str, object]) -> None:
    low, high = cs.min_budget(CHAIN, "dp", **options), cs.min_budget(CHAIN, "store_all")
    for k in range(5):
        _check(cs.solve(CHAIN, low + (high - low) * k // 4, "dp", **options))


@pytest.mark.parametrize("solver", ["greedy", "ilp", "ilp-rounding", "hierarchical", "store_all"])
def test_graph_status_keeps_its_promise(solver: str) -> None:
    low, high = cs.min_budget(GRAPH, solver), cs.min_budget(GRAPH, "store_all")
    for k in range(3):
        _check(cs.solve(GRAPH, max(low, low + (high - low) * k // 2), solver))
