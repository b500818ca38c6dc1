"""Searched topological orders: a lower store-all peak, used by greedy and ilp(order="search")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkpoint_solver import (
    Graph,
    InfeasibleBudgetError,
    InvalidOptionError,
    min_budget,
    simulate,
    solve,
)
from checkpoint_solver.problem.synthetic import random_dag
from checkpoint_solver.schedule import Compute, Free
from checkpoint_solver.solvers._order import low_peak_order, reorder, store_all_peak
from checkpoint_solver.solvers._plans import OpGraph, keep_all_plan, plan_ops, plan_peak
from checkpoint_solver.solvers.store_all import min_budget_store_all
from tests.solvers.graph_brute_force import graph_brute_force


def two_chains() -> Graph:
    """Two independent chains joined at the end, numbered so the order interleaves them.

    Nodes: 0 a (10 B), 1 b (10 B), 2 a' = f(a) (1 B), 3 b' = f(b) (1 B), 4 j = f(a', b') (1 B).
    In this order a and b are live together: keeping everything peaks at 10 + 10 + 1 = 21 B.
    Computing a, a', b, b', j peaks at 10 + 1 + 1 = 12 B (b and b' with a' live).
    """
    return Graph(
        names=("a", "b", "a'", "b'", "j"),
        cost=(5.0, 7.0, 1.0, 1.0, 1.0),
        out_bytes=(10, 10, 1, 1, 1),
        is_backward=(False,) * 5,
        edges=((0, 2), (1, 3), (2, 4), (3, 4)),
        cost_unit="abstract",
    )


def test_the_search_finds_the_low_peak_order() -> None:
    graph = two_chains()
    g = OpGraph.of(graph)
    assert store_all_peak(g, range(5)) == min_budget_store_all(graph) == 21
    order = low_peak_order(g)
    assert store_all_peak(g, order) == 12
    # The renumbered graph keeps the node ids: its keep-everything plan simulates at that peak.
    g2 = reorder(g, order)
    R, S = keep_all_plan(g2)
    sched = solve(graph, 21, "store_all").replace(ops=tuple(plan_ops(g2, R, S)))
    report = simulate(graph, sched)
    assert report.valid and report.peak_bytes == plan_peak(g2, R, S) == 12


def test_greedy_and_ilp_search_fit_without_recomputation() -> None:
    """At 12 B the graph's own order must recompute a and b (exhaustive search says so); in the
    searched order every node runs once, and ilp(order="search") proves that optimal outright."""
    graph = two_chains()
    in_order = graph_brute_force(graph, 12)
    anywhere = graph_brute_force(graph, 12, frontier_order=False)
    assert anywhere == graph.store_all_time == 15.0
    assert in_order == graph.store_all_time + 5.0 + 7.0
    given_order = solve(graph, 12, "ilp")  # Checkmate's model: the graph's order only
    assert given_order.status.value == "optimal"
    assert given_order.predicted.compute_time == pytest.approx(in_order)
    assert simulate(graph, given_order).valid
    for sched in (
        solve(graph, 12, "greedy"),
        solve(graph, 12, "ilp", order="search"),
        solve(graph, 12, "ilp-rounding", order="search"),
    ):
        report = simulate(graph, sched)
        assert report.valid and report.peak_bytes == sched.predicted.peak_bytes <= 12
        assert report.compute_time == pytest.approx(anywhere)
        assert "searched topological order" in sched.notes
    searched = solve(graph, 12, "ilp", order="search")
    assert searched.status.value == "optimal" and searched.gap == 0
    assert searched.lower_bound == pytest.approx(anywhere)
    assert searched.options["order"] == "search"


def test_bad_order_option() -> None:
    with pytest.raises(InvalidOptionError, match=r"order='best' is not one of given, search"):
        solve(two_chains(), 21, "ilp", order="best")


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=8),
    seed=st.integers(min_value=0, max_value=10**6),
    frac=st.floats(min_value=0, max_value=1),
)
def test_searched_orders_give_valid_schedules(n: int, seed: int, frac: float) -> None:
    """On random DAGs the searched order is a topological permutation no worse than the graph's
    own, and greedy / ilp(order="search") schedules simulate exactly as predicted, never below
    the any-order optimum of exhaustive search."""
    graph = random_dag(n, seed=seed, edge_prob=0.3, max_cost=6, max_bytes=6)
    g = OpGraph.of(graph)
    order = low_peak_order(g)
    assert sorted(order) == list(range(g.n))
    position = {v: k for k, v in enumerate(order)}
    assert all(position[u] < position[v] for v in range(g.n) for u in g.preds[v])
    assert store_all_peak(g, order) <= min_budget_store_all(graph)
    top = min_budget_store_all(graph)
    low = min_budget(graph, "ilp", order="search")
    assert low <= top
    budget = int(low + frac * (top - low))
    best_anywhere = graph_brute_force(graph, budget, frontier_order=False)
    for solver, options in (
        ("greedy", {}),
        ("ilp", {"order": "search"}),
        ("ilp-rounding", {"order": "search"}),
    ):
        try:
            sched = solve(graph, budget, solver, **options)
        except InfeasibleBudgetError:  # the heuristics may fail where the MILP does not
            assert solver != "ilp" and budget < min_budget(graph, solver, **options)
            continue
        report = simulate(graph, sched)
        assert report.valid and report.peak_bytes == sched.predicted.peak_bytes <= budget
        assert report.compute_time == pytest.approx(sched.predicted.compute_time)
        assert best_anywhere is not None
        assert report.compute_time >= best_anywhere - 1e-9
        assert sched.lower_bound <= report.compute_time + 1e-9
        assert all(isinstance(op, (Compute, Free)) for op in sched.ops)
