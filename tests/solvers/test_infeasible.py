"""Budgets below the minimum raise with the exact minimum; the minimum itself solves."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from checkpoint_solver import InfeasibleBudgetError, min_budget, simulate, solve
from checkpoint_solver.problem.synthetic import transformer_chain
from checkpoint_solver.solvers import available_solvers
from checkpoint_solver.solvers._registry import REGISTRY
from tests.strategies import applicable, chains, graphs, solver_options, uniform_chains


@pytest.mark.parametrize("solver", sorted(available_solvers("chain")))
@given(chain=st.one_of(chains(), uniform_chains()))
def test_chain_minimum_is_exact(solver: str, chain) -> None:
    """At min_budget the solver succeeds with that peak; one byte less raises with the minimum."""
    assume(applicable(solver, chain))
    options = solver_options(solver)
    low = min_budget(chain, solver, **options)
    s = solve(chain, low, solver, **options)
    assert simulate(chain, s).peak_bytes <= low
    if low > 1 and REGISTRY[solver].exact_min_budget:
        with pytest.raises(InfeasibleBudgetError) as info:
            solve(chain, low - 1, solver, **options)
        assert info.value.min_budget_bytes == low
        assert info.value.budget_bytes == low - 1


EXACT_GRAPH = {name for name, spec in REGISTRY.items() if spec.exact_min_budget}


@pytest.mark.parametrize("solver", sorted(set(available_solvers("graph")) - {"cpsat"}))
@given(graph=graphs())
def test_graph_minimum_is_exact(solver: str, graph) -> None:
    """Graph solvers: the minimum solves; for the exact ones one byte less raises."""
    if solver == "hierarchical":
        from checkpoint_solver.solvers.hierarchical import not_a_training_graph

        # It cuts segments from a graph without blocks; it needs forward and backward op nodes.
        assume(not_a_training_graph(graph) is None)
    options = solver_options(solver)
    low = min_budget(graph, solver, **options)
    assert simulate(graph, solve(graph, max(low, 1), solver, **options)).valid
    if low > 1 and solver in EXACT_GRAPH:
        with pytest.raises(InfeasibleBudgetError):
            solve(graph, low - 1, solver, **options)


def test_message_names_both_budgets_and_the_fix() -> None:
    """The error message gives the budget and the minimum in bytes and human units, and what to do."""
    chain = transformer_chain(4)
    low = min_budget(chain, "sqrt")
    with pytest.raises(InfeasibleBudgetError) as info:
        solve(chain, "1GiB", "sqrt")
    msg = str(info.value)
    assert "budget 1073741824 bytes (1.00 GiB)" in msg
    assert f"minimum feasible budget is {low} bytes" in msg
    assert "raise the budget" in msg and "use dp" in msg
