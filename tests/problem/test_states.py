"""Model states and whole-step budgets: the chain rewrite, the simulator's step scope, solving."""

from __future__ import annotations

import dataclasses

import pytest

import checkpoint_solver as cs
from checkpoint_solver.errors import (
    InfeasibleBudgetError,
    InvalidOptionError,
    InvalidProblemError,
)
from checkpoint_solver.problem import (
    Chain,
    Graph,
    ModelStates,
    fingerprint,
    problem_from_dict,
    problem_to_dict,
    step_floor,
)
from checkpoint_solver.problem.synthetic import transformer_chain
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.schedule.ops import Bwd, Compute, Free, FwdTape
from checkpoint_solver.simulation import simulate, simulate_ops

# Two stages, every size distinct so a wrong term shows: a[0]=8, a[1]=4, a[2]=2, tapes 16 and 32.
TWO = Chain(uf=(1.0, 1.0), ub=(2.0, 2.0), x=(8, 4, 2), xbar=(16, 32), of=(0, 0), ob=(0, 0))
STATES = ModelStates(params=1000, optimizer=2000, grads=(100, 300), step=50)


def _with(chain: Chain, states: ModelStates) -> Chain:
    return dataclasses.replace(chain, states=states)


def test_states_round_trip_and_leave_the_fingerprint_alone() -> None:
    chain = _with(TWO, STATES)
    assert problem_from_dict(problem_to_dict(chain)) == chain
    assert fingerprint(chain) == fingerprint(TWO)
    assert "states" not in problem_to_dict(TWO)


@pytest.mark.parametrize(
    "states, field",
    [
        ({"params": -1}, "params"),
        ({"params": 1, "grads": (1,)}, "grads"),
        ({"params": 1, "grads": (1, 2), "grad_extra": (0, -3)}, "grad_extra"),
        ({"params": 1, "accumulate": "yes"}, "accumulate"),
        ({"params": 1, "weights": 3}, "weights"),
    ],
)
def test_bad_states_are_refused_naming_the_field(states: dict, field: str) -> None:
    with pytest.raises(InvalidProblemError, match=field):
        Chain.from_dict({**TWO.to_dict(), "states": states})


def test_whole_step_memory_by_hand() -> None:
    """store-all on TWO, traced by hand. Activations: F_all(1) 8+16=24, F_all(2) 24+32=56, B(2)
    56 + seed 2 + delta[1] 4 = 62, after it 8+16+4 = 28, B(1) 28 + delta[0] 8 = 36. The whole
    step adds params + optimizer (3000) everywhere, stage 2's gradients (300) from B(2) on and
    stage 1's (100) from B(1) on; the optimizer step holds the inputs (8), delta[0] (8), 3000,
    every gradient (400) and its temporaries (50)."""
    chain = _with(TWO, STATES)
    ops = [FwdTape(1), FwdTape(2), Bwd(2), Bwd(1)]
    act = simulate_ops(chain, ops)
    assert act.op_peaks == (24, 56, 62, 36)
    step = simulate_ops(chain, ops, scope="step")
    assert step.op_peaks == (3024, 3056, 3362, 3436)
    assert step.step_peak_bytes == 8 + 8 + 3000 + 400 + 50 == step_floor(chain)
    assert (step.peak_bytes, step.peak_index) == (3466, 4)
    over = simulate_ops(chain, ops, scope="step", budget_bytes=3465)
    assert not over.valid and over.violation is not None
    assert over.violation.index == 4 and "optimizer step" in over.violation.reason


def test_accumulated_gradients_are_there_from_the_start() -> None:
    """.grad (400) is live throughout; each new gradient while the B that makes it runs (300
    in B(2), 100 in B(1)), or, for a parameter both stages use (its gradient completes at B(1)),
    from B(2) to the end of B(1)."""
    ops = [FwdTape(1), FwdTape(2), Bwd(2), Bwd(1)]
    chain = _with(TWO, dataclasses.replace(STATES, accumulate=True))
    step = simulate_ops(chain, ops, scope="step")
    assert step.op_peaks == (3424, 3456, 3762, 3536)
    assert step.step_peak_bytes == step_floor(chain) == 3466
    shared = _with(TWO, dataclasses.replace(STATES, accumulate=True, grads_done=(400, 0)))
    assert simulate_ops(shared, ops, scope="step").op_peaks == (3424, 3456, 3762, 3836)
    with pytest.raises(InvalidProblemError, match="grads_done"):
        dataclasses.replace(STATES, grads_done=(0, 400))  # complete before it was made


def test_a_whole_step_budget_below_the_optimizer_step_names_the_floor() -> None:
    base = transformer_chain(4)
    chain = _with(
        base, ModelStates(params=10**9, optimizer=2 * 10**9, grads=(10**8,) * base.length)
    )
    floor = step_floor(chain)
    with pytest.raises(InfeasibleBudgetError, match="optimizer step alone needs") as info:
        cs.solve(chain, floor - 1, "dp")
    assert info.value.min_budget_bytes is not None and info.value.min_budget_bytes >= floor
    sched = cs.solve(chain, info.value.min_budget_bytes, "dp")
    assert simulate(chain, sched).valid


def test_scope_defaults_to_the_step_when_states_are_known() -> None:
    chain = _with(TWO, STATES)
    assert cs.solve(chain, 10**6, "store_all").scope == "step"
    assert cs.solve(chain, 10**6, "store_all", scope="activations").scope == "activations"
    assert cs.solve(TWO, 10**6, "store_all").scope == "activations"
    with pytest.raises(InvalidOptionError, match="optimizer="):
        cs.solve(TWO, 10**6, "store_all", scope="step")
    with pytest.raises(InvalidOptionError, match="'activations'"):
        cs.solve(chain, 10**6, "store_all", scope="memory")


def test_step_schedules_round_trip_with_their_scope(tmp_path) -> None:
    chain = _with(TWO, STATES)
    sched = cs.solve(chain, 10**6, "dp")
    path = sched.save(tmp_path / "s.json")
    assert '"scope": "step"' in path.read_text()
    assert Schedule.load(path) == sched.replace(solve_s=sched.solve_s)
    plain = cs.solve(TWO, 10**6, "dp").save(tmp_path / "a.json")
    assert "scope" not in plain.read_text()


def _heavy() -> Chain:
    """Parameters much larger than activations, gradients spread over the stages."""
    chain = transformer_chain(6)
    total = sum(chain.x)
    return _with(
        chain,
        ModelStates(
            params=total,
            optimizer=2 * total,
            grads=(total // chain.length,) * chain.length,
            step=total // 20,
        ),
    )


@pytest.mark.parametrize("solver", ["dp", "store_all", "uniform", "sqrt", "revolve", "auto"])
def test_every_chain_solver_fits_a_whole_step_budget(solver: str) -> None:
    chain = _heavy()
    low = cs.min_budget(chain, solver)
    high = cs.min_budget(chain, "store_all")
    assert low >= step_floor(chain)
    for budget in (low, (low + high) // 2, high):
        sched = cs.solve(chain, budget, solver)
        report = simulate(chain, sched)
        assert report.valid and report.peak_bytes <= budget
        assert sched.predicted.peak_bytes == report.peak_bytes
    with pytest.raises(InfeasibleBudgetError):
        cs.solve(chain, low - 1, solver)


def test_whole_step_aware_dp_beats_subtracting_the_states_by_hand() -> None:
    """At the start of the backward only the last stage's gradients exist: a solver that knows
    it keeps more there than one given the budget minus every gradient."""
    chain = _heavy()
    st = chain.states
    assert st is not None
    bare = dataclasses.replace(chain, states=None)
    low, high = cs.min_budget(chain, "dp"), cs.min_budget(chain, "store_all")
    strictly = 0
    for k in range(1, 8):
        budget = low + (high - low) * k // 8
        aware = cs.solve(chain, budget, "dp")
        try:
            hand = cs.solve(bare, budget - st.params - st.optimizer - st.grad_bytes, "dp")
        except InfeasibleBudgetError:
            strictly += 1
            continue
        as_step = hand.replace(scope="step")
        assert simulate(chain, as_step).peak_bytes <= budget  # by hand fits, but wastes room
        assert aware.predicted.compute_time <= hand.predicted.compute_time * (1 + 1e-9)
        strictly += aware.predicted.compute_time < hand.predicted.compute_time * (1 - 1e-6)
    assert strictly >= 3


def test_tradeoff_and_min_budget_follow_the_scope() -> None:
    chain = _heavy()
    curve = cs.tradeoff(chain, solver="dp", points=4)
    assert curve[0].budget_bytes == cs.min_budget(chain, "dp") >= step_floor(chain)
    assert all(p.feasible for p in curve)
    act = cs.tradeoff(chain, solver="dp", points=4, scope="activations")
    assert act[0].budget_bytes < step_floor(chain)


def _tiny_graph(states: ModelStates | None) -> Graph:
    """x -> f (forward, 10 B) -> loss' -> b (backward, 4 B; makes 100 B of parameter
    gradients) -> c (backward, 2 B; makes 50 B)."""
    return Graph(
        names=("x", "f", "t", "b", "c"),
        cost=(0.0, 1.0, 0.0, 1.0, 1.0),
        out_bytes=(8, 10, 1, 4, 2),
        is_backward=(False, False, True, True, True),
        role=("input", "op", "op", "op", "op"),
        edges=((0, 1), (1, 2), (1, 3), (2, 3), (3, 4)),
        states=states,
    )


def test_graph_whole_step_by_hand() -> None:
    """Activations: f 10, t 11, b 15, free t 14, free f 4, c 6. The whole step adds the
    parameters, inputs and optimizer state (1000 + 8 + 2000), b's gradients (100) from b on and
    c's (50) from c on, a shared gradient's second copy (30) from b through c; the optimizer step
    holds what is left (6), 3008, every gradient (150) and its temporaries (7)."""
    states = ModelStates(
        params=1000,
        inputs=8,
        optimizer=2000,
        grads=(0, 0, 0, 100, 50),
        step=7,
        windows=((3, 4, 30),),
    )
    graph = _tiny_graph(states)
    assert problem_from_dict(problem_to_dict(graph)) == graph
    assert fingerprint(graph) == fingerprint(_tiny_graph(None))
    ops = [Compute(1), Compute(2), Compute(3), Free(2), Free(1), Compute(4)]
    assert simulate_ops(graph, ops).op_peaks == (10, 11, 15, 14, 4, 6)
    step = simulate_ops(graph, ops, scope="step")
    assert step.op_peaks == (3018, 3019, 3153, 3152, 3142, 3194)
    assert step.step_peak_bytes == 6 + 3008 + 150 + 7 == step_floor(graph) + 6
    assert (step.peak_bytes, step.peak_index) == (3194, 5)


def test_graph_solvers_fit_a_whole_step_budget() -> None:
    graph = _tiny_graph(ModelStates(params=1000, optimizer=2000, grads=(0, 0, 0, 100, 50), step=7))
    for solver in ("store_all", "greedy", "ilp"):
        low = cs.min_budget(graph, solver)
        sched = cs.solve(graph, low, solver)
        report = simulate(graph, sched)
        assert sched.scope == "step" and report.valid and report.peak_bytes <= low
    with pytest.raises(InfeasibleBudgetError, match="optimizer step alone"):
        cs.solve(graph, step_floor(graph) - 1, "greedy")


def test_auto_solves_a_graphs_whole_step_with_its_candidates_aware() -> None:
    graph = _tiny_graph(ModelStates(params=1000, optimizer=2000, grads=(0, 0, 0, 100, 50), step=7))
    low = cs.min_budget(graph)  # auto
    assert low == cs.min_budget(graph, "ilp") >= step_floor(graph)
    sched = cs.solve(graph, low)
    assert sched.scope == "step" and simulate(graph, sched).peak_bytes <= low
