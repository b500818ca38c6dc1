"""Dispatch by name, option checking, and auto's record of its choice."""

from __future__ import annotations

import pytest

from checkpoint_solver import (
    InvalidOptionError,
    UnknownOptionError,
    UnknownSolverError,
    available_solvers,
    solve,
    tradeoff,
)
from checkpoint_solver.problem.synthetic import random_chain, random_dag, transformer_chain


def test_available_solvers_by_kind() -> None:
    """Chain and graph solver lists contain the baselines."""
    assert {"store_all", "uniform", "sqrt", "auto"} <= set(available_solvers("chain"))
    assert {"store_all", "auto"} <= set(available_solvers("graph"))
    assert "uniform" not in available_solvers("graph")


def test_unknown_solver_lists_valid_ones() -> None:
    """An unknown name raises UnknownSolverError listing the solvers for that kind."""
    with pytest.raises(
        UnknownSolverError,
        match=r"unknown solver 'magic'; the solvers for chain problems are: .*sqrt",
    ):
        solve(random_chain(3), 10**6, "magic")


def test_solver_of_the_wrong_kind() -> None:
    """A chain-only solver on a graph says which solvers fit graphs."""
    with pytest.raises(UnknownSolverError, match=r"handles chain problems, not graph; .*store_all"):
        solve(random_dag(5), 10**6, "sqrt")


def test_unknown_option_lists_valid_ones() -> None:
    """An unknown option raises UnknownOptionError naming the valid options."""
    with pytest.raises(UnknownOptionError, match=r"no option 'segmnts'; its options are: segments"):
        solve(random_chain(4), 10**6, "uniform", segmnts=2)
    with pytest.raises(UnknownOptionError, match=r"its options are: none"):
        solve(random_chain(4), 10**6, "sqrt", segments=2)


def test_bad_option_value() -> None:
    """An option of the right name and a wrong value raises InvalidOptionError with the valid range."""
    with pytest.raises(InvalidOptionError, match=r"give an integer in 1..4"):
        solve(random_chain(4), 10**6, "uniform", segments=9)


def test_not_a_problem() -> None:
    """Passing something other than a Chain or Graph raises a typed TypeError saying what."""
    with pytest.raises(TypeError, match=r"takes a problem \(Chain or Graph\), got list"):
        solve([1, 2, 3], 10**6)  # type: ignore[arg-type]


def test_auto_records_its_choice() -> None:
    """auto returns the fastest candidate and notes which it picked among which."""
    chain = transformer_chain(4)
    s = solve(chain, "6GiB")
    assert s.solver in available_solvers("chain")
    assert f"auto picked {s.solver}" in s.notes
    for name in ("uniform", "sqrt", "store_all"):
        assert f"{name} (" in s.notes
    for name in ("uniform", "sqrt"):
        try:
            other = solve(chain, "6GiB", name)
        except Exception:
            continue
        assert s.predicted.compute_time <= other.predicted.compute_time


def test_solve_records_solve_time() -> None:
    """solve() fills solve_s with the measured solver time."""
    s = solve(random_chain(5), 10**6, "uniform")
    assert s.solve_s is not None and s.solve_s >= 0


def test_tradeoff_curve_is_monotone() -> None:
    """uniform's trade-off curve: time never increases with the budget; infeasible points are marked."""
    chain = transformer_chain(4)
    curve = tradeoff(chain, solver="uniform", points=8)
    assert len(curve) >= 2 and all(p.feasible for p in curve)
    times = [p.compute_time for p in curve]
    assert times == sorted(times, reverse=True)
    low = tradeoff(chain, [1], "uniform")
    assert not low[0].feasible and low[0].peak_bytes is None


def test_integer_options_are_checked_alike() -> None:
    """One check for every solver's integer options: a bool is not an integer (threads=True
    used to pass), and the message names the option, the value and the range."""
    import checkpoint_solver as cs
    from checkpoint_solver.problem.synthetic import uniform_chain

    chain = transformer_chain(4)
    budget = cs.min_budget(chain, "store_all")
    with pytest.raises(InvalidOptionError, match=r"mem_slots=True must be an integer >= 1"):
        cs.solve(chain, budget, "dp", mem_slots=True)
    with pytest.raises(InvalidOptionError, match=r"mem_slots=0 must be an integer >= 1 \("):
        cs.min_budget(chain, "dp", mem_slots=0)
    with pytest.raises(InvalidOptionError, match=r"snapshots=0 must be an integer >= 1"):
        cs.solve(uniform_chain(4), 10**9, "revolve", snapshots=0)
    graph = cs.load_problem("example:vgg16-graph")
    with pytest.raises(InvalidOptionError, match=r"threads=True must be an integer >= 1 or None"):
        cs.solve(graph, 10**12, "ilp", threads=True)


def _keyword_options(fn: object) -> dict[str, object]:
    import inspect

    params = inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_solve_min_budget_and_tradeoff_declare_the_same_options() -> None:
    """A solver's options are one set: `solve`, `min_budget` and (when it has one) `tradeoff`
    take the same names with the same defaults, so an option valid for one is valid for all."""
    from checkpoint_solver.solvers._registry import REGISTRY

    for name, spec in REGISTRY.items():
        options = list(_keyword_options(spec.fn).items())
        assert options == list(spec.options.items()), name
        assert list(_keyword_options(spec.min_budget).items()) == options, name
        if spec.tradeoff is not None:
            assert list(_keyword_options(spec.tradeoff).items()) == options, name


@pytest.mark.parametrize(
    "name",
    [
        "store_all",
        "uniform",
        "revolve",
        "dp",
        "ilp",
        "ilp-rounding",
        "greedy",
        "hierarchical",
        "cpsat",
        "auto",
    ],
)
def test_every_option_refuses_a_value_of_no_kind_alike_in_solve_and_min_budget(name: str) -> None:
    """Each option is checked, and by one check: an object of no option's type is refused with
    an `InvalidOptionError` that names the option, the same from `solve` and `min_budget`."""
    import checkpoint_solver as cs
    from checkpoint_solver.problem.synthetic import uniform_chain
    from checkpoint_solver.solvers._registry import REGISTRY

    spec = REGISTRY[name]
    problem = uniform_chain(4) if "chain" in spec.kinds else random_dag(6, seed=1)
    for option in spec.options:
        bad = {option: object()}
        with pytest.raises(InvalidOptionError, match=option) as from_solve:
            cs.solve(problem, 10**9, name, **bad)
        with pytest.raises(InvalidOptionError, match=option) as from_min:
            cs.min_budget(problem, name, **bad)
        assert str(from_solve.value) == str(from_min.value)
