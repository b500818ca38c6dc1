"""Whole-step budgets on real models: the profiler's model states, measured against every live
tensor of a real step (parameters, optimizer state and gradients included)."""

from __future__ import annotations

import copy
import warnings

import pytest

torch = pytest.importorskip("torch")

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver import ProfilingError, models  # noqa: E402
from checkpoint_solver.problem import step_floor  # noqa: E402
from checkpoint_solver.runtime.measure import measure_step  # noqa: E402
from checkpoint_solver.solvers.baseline_plans import profile_blocks, torch_per_block  # noqa: E402


def _gpt():  # type: ignore[no-untyped-def]
    return models.gpt(layers=4, dim=64, heads=2, context=32, vocab=256, batch=4, dropout=0.0)


def _profile(model, inputs, **kw):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw.setdefault("graph", False)
        return cs.profile(model, inputs, warmup=1, repeats=1, **kw)


def _param_bytes(model) -> int:  # type: ignore[no-untyped-def]
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.parametrize(
    "make, expected",
    [
        # AdamW: two moments per parameter and a 4-byte step count per parameter tensor.
        (
            lambda m: torch.optim.AdamW(m.parameters()),
            lambda m: 2 * _param_bytes(m) + 4 * len(list(m.parameters())),
        ),
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), _param_bytes),
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.1), lambda m: 0),
    ],
    ids=["adamw", "sgd-momentum", "sgd"],
)
def test_the_profile_measures_the_optimizer_and_leaves_it_as_found(make, expected) -> None:  # type: ignore[no-untyped-def]
    model, inputs = _gpt()
    opt = make(model)
    before = [p.detach().clone() for p in model.parameters()]
    prof = _profile(model, inputs, optimizer=opt)
    st = prof.chain.states
    assert st is not None
    assert st.optimizer == expected(model)
    assert st.params == _param_bytes(model) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    assert st.grad_bytes == _param_bytes(model)  # every parameter gets a gradient
    assert all(g >= 0 for g in st.grads) and st.grads[-1] > 0
    assert not opt.state  # the real steps it took were undone
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert prof.measurement["optimizer"] == type(opt).__name__


def test_profile_refuses_an_optimizer_over_other_tensors() -> None:
    model, inputs = _gpt()
    other = torch.nn.Linear(3, 3)
    with pytest.raises(ProfilingError, match=r"model\.parameters"):
        _profile(model, inputs, optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ProfilingError, match=r"torch\.optim\.Optimizer"):
        _profile(model, inputs, optimizer="adamw")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ProfilingError, match="closure"):
        _profile(model, inputs, optimizer=torch.optim.LBFGS(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def _measured_step(model, inputs, prof, sched, accumulate: bool = False) -> int:  # type: ignore[no-untyped-def]
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    cs.apply(m, sched, prof)
    measure_step(m, inputs, optimizer=opt, accumulate=accumulate)  # makes the optimizer state
    got = measure_step(m, inputs, optimizer=opt, accumulate=accumulate).step_peak_bytes
    assert got is not None
    return got


@pytest.mark.parametrize("accumulate", [False, True])
def test_whole_step_predictions_are_the_measured_peaks(accumulate: bool) -> None:
    model, inputs = _gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    prof = _profile(model, inputs, optimizer=opt, accumulate=accumulate)
    chain = prof.chain
    first, count = profile_blocks([s.name for s in prof.stages])
    low, high = cs.min_budget(chain, "dp"), cs.min_budget(chain, "store_all")
    per_block = torch_per_block(chain, first, count)
    for sched in (
        cs.solve(chain, high, "store_all"),
        per_block,
        cs.solve(chain, (low + high) // 2),
    ):
        predicted = cs.simulate(chain, sched).peak_bytes
        got = _measured_step(model, inputs, prof, sched, accumulate)
        assert abs(got / predicted - 1) <= 0.03, (sched.solver, got, predicted)


def test_a_whole_step_schedule_fits_where_the_by_hand_one_recomputes_more() -> None:
    """The by-hand user subtracts parameters, optimizer state and every gradient from the
    device budget; the whole-step solve knows the gradients appear during the backward."""
    model, inputs = models.mlp(depth=6, width=256, hidden=256, batch=32)
    opt = torch.optim.AdamW(model.parameters())
    prof = _profile(model, inputs, optimizer=opt)
    chain = prof.chain
    st = chain.states
    assert st is not None
    bare = prof.chain.__class__.from_dict({**chain.to_dict(), "states": None})
    low, high = cs.min_budget(chain, "dp"), cs.min_budget(chain, "store_all")
    budget = low + (high - low) // 3
    aware = cs.solve(chain, budget, "dp")
    hand = cs.solve(bare, budget - st.params - st.optimizer - st.grad_bytes, "dp")
    assert aware.predicted.compute_time < hand.predicted.compute_time
    got = _measured_step(model, inputs, prof, aware)
    assert got <= budget * 1.03 and got >= step_floor(chain)


@pytest.mark.parametrize("name", ["llama", "resnet", "unet"])
def test_op_level_whole_step_predictions_are_the_measured_peaks(name: str) -> None:
    """The op graph with the model states: hierarchical (which counts gradients appearing at
    each backward node) and greedy (solved at the budget less the states) at a middle
    whole-step budget; measured within 3 % both ways. Hierarchical's whole-step minimum is
    below its activation minimum plus every model state."""
    from checkpoint_solver import zoo

    if name in zoo.HF_FAMILIES:
        pytest.importorskip("transformers")
    model, inputs = zoo.build(name, 0)
    prof = _profile(model, inputs, optimizer=torch.optim.AdamW(model.parameters()), graph=True)
    graph = prof.graph
    assert graph is not None and graph.states is not None
    assert graph.states.grad_bytes == prof.chain.states.grad_bytes
    st = graph.states
    low = cs.min_budget(graph, "hierarchical")
    assert (
        low
        <= cs.min_budget(graph, "hierarchical", scope="activations")
        + st.fixed_bytes
        + st.grad_bytes
    )
    high = cs.min_budget(graph, "store_all")
    for solver in ("hierarchical", "greedy"):
        sched = cs.solve(graph, (low + high) // 2, solver)
        assert sched.scope == "step"
        predicted = cs.simulate(graph, sched).peak_bytes
        got = _measured_step(model, inputs, prof, sched)
        assert abs(got / predicted - 1) <= 0.03, (solver, got, predicted)


def test_the_milp_counts_the_whole_step_and_its_schedule_is_measured() -> None:
    """ilp with model states: each stage's memory rows carry the states and the gradients made
    by then; its schedule at a middle whole-step budget is proven optimal, fits, and the
    measured whole step is its prediction."""
    model, inputs = models.mlp(depth=3, width=128, hidden=256, batch=32)
    prof = _profile(model, inputs, optimizer=torch.optim.AdamW(model.parameters()), graph=True)
    graph = prof.graph
    assert graph is not None and graph.states is not None
    low = cs.min_budget(graph, "ilp", time_limit=60)
    assert low >= step_floor(graph)
    assert low <= cs.min_budget(graph, "greedy")
    high = cs.min_budget(graph, "store_all")
    budget = (low + high) // 2
    sched = cs.solve(graph, budget, "ilp", time_limit=60)
    assert sched.scope == "step" and sched.status.value == "optimal"
    predicted = cs.simulate(graph, sched).peak_bytes
    assert predicted <= budget
    got = _measured_step(model, inputs, prof, sched)
    assert abs(got / predicted - 1) <= 0.03, (got, predicted)


def test_the_greedy_counts_the_whole_step_and_beats_subtracting_by_hand() -> None:
    """greedy with model states: each stage's budget is the budget less the states at that
    stage (the gradients made by then), so at a whole-step budget it is never slower than the
    greedy solved at the budget less every state (what a user does by hand) and strictly
    faster where the gradients come late; its schedules fit the whole step, the optimizer step
    included, and its minimum is at most the by-hand one's (when that fits the step)."""
    from checkpoint_solver.solvers._step import graph_margin

    model, inputs = models.mlp(depth=3, width=128, hidden=256, batch=32)
    prof = _profile(model, inputs, optimizer=torch.optim.AdamW(model.parameters()), graph=True)
    graph = prof.graph
    assert graph is not None and graph.states is not None
    margin = graph_margin(graph)
    low, high = cs.min_budget(graph, "greedy"), cs.min_budget(graph, "store_all")
    assert low >= step_floor(graph)
    hand_low = cs.min_budget(graph, "greedy", scope="activations") + margin
    assert low <= max(hand_low, step_floor(graph))
    faster = 0
    for f in (0.0, 0.1, 0.3, 0.6):
        budget = int(low + f * (high - low))
        aware = cs.solve(graph, budget, "greedy")
        assert aware.scope == "step" and cs.simulate(graph, aware).valid
        assert aware.predicted.peak_bytes <= budget
        try:
            hand = cs.solve(graph, budget - margin, "greedy", scope="activations")
        except cs.InfeasibleBudgetError:
            continue
        assert aware.predicted.compute_time <= hand.predicted.compute_time * (1 + 1e-9), f
        faster += aware.predicted.compute_time < hand.predicted.compute_time * (1 - 1e-3)
    assert faster >= 1
