"""The CP-SAT retention-interval solver against exhaustive search and the MILP."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkpoint_solver import (
    CheckpointSolverError,
    Graph,
    InfeasibleBudgetError,
    InvalidOptionError,
    SolverUnavailableError,
    min_budget,
    simulate,
    solve,
)
from checkpoint_solver.solvers import cpsat
from checkpoint_solver.solvers.store_all import min_budget_store_all
from tests.solvers.graph_brute_force import graph_brute_force
from tests.solvers.test_graph_solvers import small_dags

pytest.importorskip("ortools")


@settings(max_examples=15, deadline=None)
@given(graph=small_dags(), frac=st.floats(min_value=0, max_value=1))
def test_cpsat_with_enough_intervals_equals_exhaustive_search(graph: Graph, frac: float) -> None:
    """With as many intervals as nodes nothing is restricted: CP-SAT's optimum equals exhaustive
    search in frontier order; with 2 intervals it can only be worse or equal. Both simulate as
    predicted."""
    low, high = min_budget(graph, "ilp"), min_budget_store_all(graph)
    budget = int(low + frac * (high - low))
    best = graph_brute_force(graph, budget)
    assert best is not None
    full = solve(graph, budget, "cpsat", intervals=graph.size, time_limit=30)
    assert "proved this optimal" in full.notes
    assert full.predicted.compute_time == pytest.approx(best)
    try:
        two = solve(graph, budget, "cpsat", intervals=2, time_limit=30)
    except InfeasibleBudgetError:
        return  # the restriction can make a budget infeasible
    assert two.predicted.compute_time >= best - 1e-9
    for sched in (full, two):
        report = simulate(graph, sched)
        assert report.valid and report.peak_bytes == sched.predicted.peak_bytes <= budget
        assert sched.predicted.compute_time == pytest.approx(report.compute_time)
        assert sched.status.value == "feasible"
        assert sched.lower_bound == pytest.approx(graph.store_all_time)


@settings(max_examples=8, deadline=None)
@given(graph=small_dags())
def test_cpsat_minimum_budget_solves(graph: Graph) -> None:
    """min_budget(cpsat) solves, and with enough intervals it is the MILP's exact minimum."""
    low = min_budget(graph, "cpsat", intervals=graph.size, time_limit=30)
    assert low == min_budget(graph, "ilp")
    sched = solve(graph, low, "cpsat", intervals=graph.size, time_limit=30)
    assert simulate(graph, sched).valid


def test_cpsat_matches_the_milp_on_vgg16(checkmate_dir) -> None:
    from checkpoint_solver import load_problem

    graph = load_problem(checkmate_dir / "vgg16_train.json")
    budget = int(0.9 * min_budget_store_all(graph))
    milp = solve(graph, budget, "ilp")
    cp = solve(graph, budget, "cpsat", time_limit=30)
    assert cp.predicted.compute_time == pytest.approx(milp.predicted.compute_time)


def test_cpsat_bad_input(monkeypatch) -> None:
    from checkpoint_solver.problem.synthetic import random_dag

    graph = random_dag(5, seed=1)
    with pytest.raises(InvalidOptionError, match="intervals"):
        solve(graph, 100, "cpsat", intervals=0)
    with pytest.raises(InvalidOptionError, match="time_limit"):
        solve(graph, 100, "cpsat", time_limit=0)
    with pytest.raises(InfeasibleBudgetError, match="largest node with its inputs"):
        solve(graph, 1, "cpsat")
    monkeypatch.setattr(
        cpsat,
        "_run_worker",
        lambda job, limit: {"status": "UNKNOWN", "chosen": [], "best_peak": 40},
    )
    # No schedule within the limit: the greedy's, saying so (a heuristic, never a claim).
    fallback = solve(graph, min_budget_store_all(graph), "cpsat", time_limit=1)
    assert fallback.solver == "cpsat" and fallback.status.value == "heuristic"
    assert "lowest peak it reached was 40" in fallback.notes and "greedy" in fallback.notes
    monkeypatch.setattr(cpsat, "greedy_fallback", lambda *a, **k: None)
    with pytest.raises(CheckpointSolverError, match="lowest peak it reached was 40"):
        solve(graph, min_budget_store_all(graph), "cpsat", time_limit=1)


def test_cpsat_without_ortools(monkeypatch) -> None:
    import builtins
    import sys

    from checkpoint_solver.problem.synthetic import random_dag

    real_import = builtins.__import__

    def no_ortools(name, *args, **kwargs):
        if name == "ortools" or name.startswith("ortools."):
            raise ImportError("no ortools")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ortools", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ortools)
    graph = random_dag(5, seed=1)
    with pytest.raises(SolverUnavailableError, match="pip install ortools"):
        solve(graph, min_budget_store_all(graph), "cpsat")
