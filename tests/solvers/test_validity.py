"""Every solver, on generated problems and feasible budgets, gives a valid schedule it predicted exactly."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from checkpoint_solver import min_budget, simulate, solve
from checkpoint_solver.solvers import available_solvers
from checkpoint_solver.solvers.store_all import min_budget_store_all
from tests.strategies import (
    applicable,
    chains,
    feasible_budgets,
    graphs,
    solver_options,
    uniform_chains,
)

CHAIN_SOLVERS = sorted(available_solvers("chain"))
# cpsat solves in a child process (about 0.5 s a call): its own tests (test_cpsat.py) check it
# with fewer examples.
GRAPH_SOLVERS = [
    s for s in sorted(set(available_solvers("graph")) - {"cpsat"}) if s != "hierarchical"
]  # needs graph.block: tests/runtime/test_oplevel.py


def _assert_valid_and_predicted(problem, schedule) -> None:
    report = simulate(problem, schedule)
    assert report.valid, report.violation
    assert report.peak_bytes <= schedule.budget_bytes
    assert schedule.predicted.peak_bytes == report.peak_bytes
    assert schedule.predicted.compute_time == pytest.approx(
        report.compute_time, rel=1e-9, abs=1e-12
    )
    assert schedule.predicted.overhead == pytest.approx(report.overhead, rel=1e-9, abs=1e-12)
    assert schedule.predicted.stall_time == pytest.approx(report.stall_time, rel=1e-9, abs=1e-12)
    assert schedule.predicted.host_peak_bytes == report.host_peak_bytes


@pytest.mark.parametrize("solver", CHAIN_SOLVERS)
@given(data=st.data(), chain=st.one_of(chains(), uniform_chains()))
def test_chain_solvers_valid_within_budget(solver: str, chain, data) -> None:
    """Every chain solver's schedule simulates valid, within budget, exactly as predicted."""
    assume(applicable(solver, chain))
    options = solver_options(solver)
    low = min_budget(chain, solver, **options)
    budget = data.draw(feasible_budgets(low, min_budget_store_all(chain)), label="budget")
    _assert_valid_and_predicted(chain, solve(chain, budget, solver, **options))


@pytest.mark.parametrize("solver", GRAPH_SOLVERS)
@given(data=st.data(), graph=graphs())
def test_graph_solvers_valid_within_budget(solver: str, graph, data) -> None:
    """Every graph solver's schedule simulates valid, within budget, exactly as predicted."""
    options = solver_options(solver)
    low = min_budget(graph, solver, **options)
    budget = data.draw(feasible_budgets(low, low * 2), label="budget")
    _assert_valid_and_predicted(graph, solve(graph, budget, solver, **options))


@given(graph=graphs())
def test_graph_store_all_without_frees_holds_everything(graph) -> None:
    """With free_after_last_use=False the peak is the sum of every output."""
    total = sum(
        b
        for b, r in zip(graph.out_bytes, graph.role, strict=True)
        if r == "op" or graph.sources_in_budget
    )
    s = solve(graph, max(total, 1), "store_all", free_after_last_use=False)
    _assert_valid_and_predicted(graph, s)
    assert s.predicted.peak_bytes == total


@given(chain=chains(min_length=1))
def test_store_all_is_the_time_lower_bound(chain) -> None:
    """No chain solver computes less than store_all, whose overhead is zero."""
    top = max(1, min_budget_store_all(chain))
    ref = solve(chain, top, "store_all")
    assert ref.predicted.overhead == 0 and ref.status.value == "optimal"
    for solver in CHAIN_SOLVERS:
        if not applicable(solver, chain):
            continue
        options = solver_options(solver)
        s = solve(chain, max(top, min_budget(chain, solver, **options)), solver, **options)
        assert s.predicted.compute_time >= ref.predicted.compute_time - 1e-9


@given(chain=chains(min_length=1))
def test_uniform_is_never_worse_than_sqrt(chain) -> None:
    """uniform (best segment count that fits) is at least as fast as sqrt at sqrt's own peak."""
    s = solve(chain, min_budget(chain, "sqrt"), "sqrt")
    u = solve(chain, max(1, s.predicted.peak_bytes), "uniform")
    assert u.predicted.compute_time <= s.predicted.compute_time + 1e-9
