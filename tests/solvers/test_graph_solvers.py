"""Graph solvers: the MILP against exhaustive search and the chain DP, rounding, the heuristic,
backends, time limits and bad input."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from checkpoint_solver import (
    Chain,
    Graph,
    InfeasibleBudgetError,
    InvalidOptionError,
    InvalidProblemError,
    SolverUnavailableError,
    min_budget,
    simulate,
    solve,
)
from checkpoint_solver.problem.synthetic import random_dag
from checkpoint_solver.solvers import _milp
from checkpoint_solver.solvers.store_all import min_budget_store_all
from tests.solvers.graph_brute_force import graph_brute_force


def small_dags() -> st.SearchStrategy[Graph]:
    return st.builds(
        lambda n, seed, p: random_dag(n, seed=seed, edge_prob=p, max_cost=6, max_bytes=6),
        st.integers(min_value=1, max_value=8),
        st.integers(min_value=0, max_value=10**6),
        st.sampled_from([0.2, 0.4]),
    )


@pytest.mark.parametrize("backend", _milp.available_backends())
@settings(max_examples=25)
@given(graph=small_dags(), frac=st.floats(min_value=0, max_value=1))
def test_ilp_equals_exhaustive_search(backend: str, graph: Graph, frac: float) -> None:
    """On random DAGs of up to 8 nodes the MILP optimum equals exhaustive search in Checkmate's
    frontier order, the schedule simulates exactly as predicted, and status is optimal."""
    low, high = min_budget(graph, "ilp", backend=backend), min_budget_store_all(graph)
    budget = int(low + frac * (high - low))
    best = graph_brute_force(graph, budget, stage_order=True)
    assert best is not None
    sched = solve(graph, budget, "ilp", backend=backend)
    report = simulate(graph, sched)
    assert report.valid and report.peak_bytes == sched.predicted.peak_bytes <= budget
    assert sched.predicted.compute_time == pytest.approx(report.compute_time)
    assert sched.status.value == "optimal" and sched.gap == 0
    assert sched.predicted.compute_time == pytest.approx(best)
    # Recomputing in any order within a stage, or computing first in any order, can only do as
    # well or better than the MILP's stages.
    within = graph_brute_force(graph, budget)
    assert within is not None and within <= best + 1e-9
    assert graph_brute_force(graph, budget, frontier_order=False) <= within + 1e-9


@settings(max_examples=25)
@given(graph=small_dags())
def test_ilp_minimum_budget_is_exact(graph: Graph) -> None:
    """min_budget(ilp) is the least budget exhaustive search over the MILP's schedules (frontier
    order, each stage's recomputations ascending) can meet."""
    low = min_budget(graph, "ilp")
    assert graph_brute_force(graph, low, stage_order=True) is not None
    if low > 1:
        assert graph_brute_force(graph, low - 1, stage_order=True) is None


def test_the_milp_recomputes_in_stage_order() -> None:
    """Why the exact oracle needs `stage_order`: this DAG meets 16 bytes when its last stage
    rebuilds node 3 (from 2, from 1) before node 0, but Checkmate's stages recompute in node
    order, so the MILP's least budget is 18 and the exhaustive search over its schedules agrees."""
    graph = random_dag(7, seed=10000, edge_prob=0.2, max_cost=6, max_bytes=6)
    assert min_budget(graph, "ilp") == 18
    assert graph_brute_force(graph, 17, stage_order=True) is None
    assert graph_brute_force(graph, 18, stage_order=True) == 21.0
    assert graph_brute_force(graph, 16) == 25.0


def chain_graph(chain: Chain) -> Graph:
    """The chain model as a graph (for chains with tapes equal to outputs and no transients).

    Mapping: input a[0] is an input node counted in the budget; f_i computes a[i] (cost uf, size
    x[i]) from f_{i-1}; loss reads a[L] and makes the seed gradient (size x[L], cost 0); b_i
    computes delta[i-1] (cost ub, size x[i-1]) from delta[i] (b_{i+1} or the loss), its tape a[i]
    (f_i) and its input a[i-1] (f_{i-1}).
    """
    n = chain.length
    names = (
        ["a0"] + [f"f{i}" for i in range(1, n + 1)] + ["loss"] + [f"b{i}" for i in range(n, 0, -1)]
    )
    cost = [0.0] + list(chain.uf) + [0.0] + [chain.ub[i - 1] for i in range(n, 0, -1)]
    size = (
        [chain.x[0]] + list(chain.x[1:]) + [chain.x[n]] + [chain.x[i - 1] for i in range(n, 0, -1)]
    )
    loss = n + 1
    bnode = {i: n + 2 + (n - i) for i in range(1, n + 1)}
    edges = [(i - 1, i) for i in range(1, n + 1)] + [(n, loss)]
    for i in range(1, n + 1):
        edges += [(loss if i == n else bnode[i + 1], bnode[i]), (i, bnode[i]), (i - 1, bnode[i])]
    return Graph(
        names=tuple(names),
        cost=tuple(cost),
        out_bytes=tuple(size),
        is_backward=(False,) * (n + 2) + (True,) * n,
        edges=tuple(edges),
        role=("input",) + ("op",) * (2 * n + 1),
        sources_in_budget=True,
        cost_unit="abstract",
    )


@settings(max_examples=20)
@given(
    n=st.integers(1, 5),
    x=st.lists(st.integers(1, 5), min_size=6, max_size=6),
    uf=st.lists(st.integers(1, 5), min_size=5, max_size=5),
    frac=st.floats(0, 1),
)
def test_ilp_on_chain_graphs_matches_the_dp(
    n: int, x: list[int], uf: list[int], frac: float
) -> None:
    """On chain-shaped graphs the MILP is never slower than the chain DP at the same budget: the
    graph model drops the chain model's rule that a live tape pins its input. When the DP's
    schedule recomputes nothing they agree exactly."""
    chain = Chain(
        uf=tuple(map(float, uf[:n])),
        ub=(1.0,) * n,
        x=tuple(x[: n + 1]),
        xbar=tuple(x[1 : n + 1]),
        of=(0,) * n,
        ob=(0,) * n,
        cost_unit="abstract",
    )
    graph = chain_graph(chain)
    low = max(min_budget(chain, "dp"), min_budget(graph, "ilp"))
    budget = int(low + frac * (min_budget_store_all(chain) - low))
    dp = solve(chain, budget, "dp")
    ilp = solve(graph, budget, "ilp")
    assert ilp.predicted.compute_time <= dp.predicted.compute_time + 1e-9
    if dp.predicted.overhead == 0:
        assert ilp.predicted.compute_time == pytest.approx(dp.predicted.compute_time)


@given(graph=small_dags(), frac=st.floats(0, 1))
@settings(max_examples=25)
def test_rounding_and_greedy_are_valid_with_bounds(graph: Graph, frac: float) -> None:
    """ilp-rounding (the graph's order) and greedy (both orders) schedules simulate valid within
    budget; their lower bounds are below the optimum of their class (the MILP's in the graph's
    order; exhaustive search in any order for greedy), their times above it."""
    from checkpoint_solver.solvers._plans import OpGraph
    from checkpoint_solver.solvers.graph_greedy import min_budget_in_order

    low, high = min_budget_in_order(OpGraph.of(graph)), min_budget_store_all(graph)
    budget = int(low + frac * (high - low))
    exact = solve(graph, budget, "ilp").predicted.compute_time
    anywhere = graph_brute_force(graph, budget, frontier_order=False)
    assert anywhere is not None and anywhere <= exact + 1e-9
    for solver, best in (("ilp-rounding", exact), ("greedy", anywhere)):
        sched = solve(graph, budget, solver)
        report = simulate(graph, sched)
        assert report.valid and report.peak_bytes == sched.predicted.peak_bytes <= budget
        if sched.status.value == "optimal":  # proven only when every node runs once
            assert sched.predicted.compute_time == pytest.approx(graph.store_all_time)
        else:
            assert sched.status.value == "heuristic"
        assert sched.lower_bound <= best + 1e-9
        assert sched.predicted.compute_time >= best - 1e-9


def test_time_limit_zero_returns_the_heuristic_with_its_bound() -> None:
    """time_limit=0 skips the MILP: the greedy schedule, status heuristic, trivial bound."""
    graph = random_dag(12, seed=3)
    budget = min_budget_store_all(graph)
    sched = solve(graph, budget, "ilp", time_limit=0)
    assert sched.status.value == "heuristic"
    assert sched.lower_bound == pytest.approx(graph.store_all_time)
    assert simulate(graph, sched).valid


def test_missing_backend_names_the_available_ones(monkeypatch) -> None:
    """A backend that is not installed raises SolverUnavailableError listing the available ones."""
    monkeypatch.setattr(_milp, "available_backends", lambda: ["cbc"])
    with pytest.raises(
        SolverUnavailableError, match=r"'highs' is not available here; available: cbc"
    ):
        solve(random_dag(5, seed=1), 10**6, "ilp", backend="highs", warm_start=False)


def test_bad_options() -> None:
    """Unknown backend, negative time limit and a gap outside [0, 1) are refused with the fix."""
    g = random_dag(5, seed=1)
    with pytest.raises(InvalidOptionError, match="is not one of highs, cbc"):
        solve(g, 10**6, "ilp", backend="gurobi")
    with pytest.raises(InvalidOptionError, match=r"seconds in \[0, 1e\+06\]"):
        solve(g, 10**6, "ilp", time_limit=-1)
    with pytest.raises(InvalidOptionError, match=r"in \[0, 1\)"):
        solve(g, 10**6, "ilp", rel_gap=2)


def test_budget_below_working_set() -> None:
    """A budget below the largest node-with-inputs is refused at once, naming that bound."""
    g = random_dag(6, seed=2)
    with pytest.raises(InfeasibleBudgetError, match="no schedule can fit below"):
        solve(g, 1, "ilp")


def test_graph_with_missing_input_is_refused() -> None:
    """An edge from a node that does not exist is refused when the graph is built."""
    with pytest.raises(InvalidProblemError, match="every input of a node must be a node"):
        Graph(
            names=("a", "b"),
            cost=(1.0, 1.0),
            out_bytes=(1, 1),
            is_backward=(False, True),
            edges=((7, 1),),
        )


def test_cbc_reports_a_gap_on_a_time_limit(checkmate_dir) -> None:
    """CBC stopped by a time limit reports feasible with a gap, or optimal if it finished."""
    from checkpoint_solver import load_problem

    graph = load_problem(checkmate_dir / "vgg16_train.json")
    budget = int(0.9 * min_budget_store_all(graph))
    sched = solve(graph, budget, "ilp", backend="cbc", time_limit=0.5)
    assert sched.status.value in {"optimal", "feasible", "heuristic"}
    assert (
        sched.lower_bound is not None and sched.lower_bound <= sched.predicted.compute_time + 1e-6
    )
    assert simulate(graph, sched).valid


def test_a_backend_infeasibility_claim_refuted_by_the_heuristic_is_not_reported(
    checkmate_dir, monkeypatch
) -> None:
    """CBC cut off in preprocessing has claimed "Integer infeasible" on feasible models; a
    schedule in hand refutes such a claim, so the solve returns it instead of raising."""
    from checkpoint_solver import load_problem

    graph = load_problem(checkmate_dir / "vgg16_train.json")
    budget = int(0.9 * min_budget_store_all(graph))
    monkeypatch.setattr(
        _milp,
        "run",
        lambda *a, **k: _milp.MilpResult(_milp.MilpStatus.INFEASIBLE, None, None, None, "cbc"),
    )
    sched = solve(graph, budget, "ilp", backend="cbc", time_limit=1)
    assert sched.status.value == "heuristic"
    assert "refuted" in (sched.notes or "")
    assert simulate(graph, sched).valid


@given(graph=small_dags(), frac=st.floats(0, 1), neighbourhood=st.booleans())
@settings(max_examples=60)
def test_dtr_events_are_valid_schedules(graph: Graph, frac: float, neighbourhood: bool) -> None:
    """The DTR simulation's events, as ops, simulate valid with exactly the peak it tracked."""
    from checkpoint_solver.schedule import Compute, Free
    from checkpoint_solver.simulation import simulate_ops
    from checkpoint_solver.solvers._dtr import dtr_events, events_to_plan
    from checkpoint_solver.solvers._plans import (
        OpGraph,
        optimal_r,
        plan_is_valid,
        plan_ops,
        prune_plan,
    )

    g = OpGraph.of(graph)
    budget = int(
        min_budget(graph, "ilp") + frac * (min_budget_store_all(graph) - min_budget(graph, "ilp"))
    )
    found = dtr_events(g, budget, neighbourhood=neighbourhood)
    assume(found is not None)
    events, peak = found
    ops = [Compute(g.nodes[k]) if kind == "compute" else Free(g.nodes[k]) for kind, k in events]
    report = simulate_ops(graph, ops, budget_bytes=budget)
    assert report.valid, report.violation
    assert report.peak_bytes == peak
    R, S = events_to_plan(g, events)
    assert R.diagonal().all()  # every stage computes its frontier node
    # Its Checkmate-stage projection (with the closed-form R) is a valid schedule too.
    plan_r, plan_s = prune_plan(g, optimal_r(g, S), S)
    assert simulate_ops(graph, plan_ops(g, plan_r, plan_s)).valid
    assert plan_is_valid(g, plan_r, plan_s)


@given(graph=small_dags(), data=st.data())
@settings(max_examples=40)
def test_plan_validity_agrees_with_the_simulator(graph: Graph, data: st.DataObject) -> None:
    """`plan_is_valid` (the guard on rounded solver output) accepts the keep-all plan, and a plan
    with one flipped entry only if its ops replay validly; a missing input is caught."""
    from checkpoint_solver.simulation import simulate_ops
    from checkpoint_solver.solvers._plans import OpGraph, keep_all_plan, plan_is_valid, plan_ops

    g = OpGraph.of(graph)
    R, S = keep_all_plan(g)
    assert plan_is_valid(g, R, S)
    which = data.draw(st.sampled_from(["R", "S"]))
    t = data.draw(st.integers(0, g.n - 1))
    i = data.draw(st.integers(0, g.n - 1))
    M = (R if which == "R" else S).copy()
    M[t, i] = not M[t, i]
    R2, S2 = (M, S) if which == "R" else (R, M)
    if plan_is_valid(g, R2, S2):
        assert simulate_ops(graph, plan_ops(g, R2, S2)).valid
    # Dropping a value that a later stage reads (and does not recompute) is always caught.
    for j in range(g.n):
        for u in g.users[j]:
            if u > j + 1:
                S3 = S.copy()
                S3[u, j] = False
                assert not plan_is_valid(g, R, S3)


@pytest.mark.skipif("highs" not in _milp.available_backends(), reason="needs highspy")
def test_lp_relaxation_falls_back_to_interior_point(monkeypatch) -> None:
    """When the dual simplex runs out of its share of time, the interior point method (without
    crossover) solves the LP relaxation to the same objective."""
    from checkpoint_solver.solvers._plans import OpGraph

    graph = random_dag(14, seed=5, edge_prob=0.3)
    g = OpGraph.of(graph)
    budget = (min_budget_store_all(graph) * 3) // 4
    model = _milp.build(g, max(budget, 1))
    simplex = _milp.run(model, "highs", time_limit=None, rel_gap=0, threads=None, relax=True)
    import highspy

    monkeypatch.setattr(_milp.highs, "_SIMPLEX_FIRST", 0.0)
    chosen = []
    original = highspy.Highs.setOptionValue

    def record(self, name, value):  # type: ignore[no-untyped-def]
        if name == "solver":
            chosen.append(value)
        return original(self, name, value)

    monkeypatch.setattr(highspy.Highs, "setOptionValue", record)
    ipm = _milp.run(model, "highs", time_limit=None, rel_gap=0, threads=None, relax=True)
    assert chosen == ["simplex", "ipm"]
    assert simplex.status == ipm.status
    if simplex.status == "optimal":
        assert ipm.objective == pytest.approx(simplex.objective, rel=1e-6)
    assert simplex.status in ("optimal", "infeasible")


def test_a_solver_process_that_ignores_its_time_limit_is_stopped(monkeypatch) -> None:
    """CBC does not always honour -sec: past the cap it gets SIGINT, then SIGKILL if it ignores
    that too; what it printed is kept and says why it stopped."""
    import time

    monkeypatch.setattr(_milp.cbc, "_OVERRUN", 0.0)
    monkeypatch.setattr(_milp.cbc, "_GRACE", 0.5)
    for script in ("echo started; sleep 30", "trap '' INT; echo started; sleep 30"):
        began = time.perf_counter()
        out = _milp.cbc._run_capped(["bash", "-c", script], time_limit=0.2)
        assert time.perf_counter() - began < 5
        assert out.returncode != 0
        assert out.stdout.startswith("started") and "ran past its time limit" in out.stdout
