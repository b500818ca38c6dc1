"""Op-level (graph) schedules replayed on real modules: bitwise gradients, exact traces, peaks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import checkpoint_solver as cs
from checkpoint_solver import models
from checkpoint_solver.errors import ApplyError, FingerprintMismatchError
from checkpoint_solver.profiling.region import capture_region
from checkpoint_solver.runtime.measure import measure_step
from checkpoint_solver.runtime.oplevel import apply_graph, graph_trace, remove_graph
from checkpoint_solver.schedule import Compute, Free
from checkpoint_solver.simulation import simulate
from checkpoint_solver.solvers._plans import OpGraph
from checkpoint_solver.solvers.graph_greedy import min_budget_in_order


def _mlp() -> tuple[nn.Module, torch.Tensor]:
    model, (x,) = models.mlp(depth=2, width=32, hidden=64, batch=4)
    return model, x


def _gpt_block() -> tuple[nn.Module, torch.Tensor]:
    model, _ = models.gpt(layers=1, dim=32, heads=2, context=16, vocab=64, batch=2, dropout=0.1)
    torch.manual_seed(7)
    return model.blocks[0], torch.randn(2, 16, 32, requires_grad=True)


CASES = {"mlp": _mlp, "gpt-block": _gpt_block}


def _loss(out: torch.Tensor) -> torch.Tensor:
    return out.sum()  # no temporaries: the measured peak is the region's own


def _step(model: nn.Module, x: torch.Tensor, seed: int) -> tuple[object, list, torch.Tensor | None]:
    for p in model.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_(x.requires_grad)
    torch.manual_seed(seed)
    m = measure_step(model, (x,), _loss)
    return m, [p.grad for p in model.parameters()], x.grad


@pytest.fixture(scope="module", params=sorted(CASES))
def captured(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    model, x = CASES[request.param]()
    region = capture_region(model, (x,), repeats=1)
    return request.param, model, x, region


def _budgets(graph: cs.Graph, solver: str = "greedy") -> list[int]:
    # ilp (Checkmate's model, the graph's order) is warm-started by the greedy in that order: from
    # its minimum up, every solve has a schedule within the 3 s limit.
    low = (
        min_budget_in_order(OpGraph.of(graph))
        if solver == "ilp"
        else cs.min_budget(graph, solver="greedy")
    )
    high = cs.solve(graph, 10**15, solver="store_all").predicted.peak_bytes
    return sorted({low, (low + high) // 2, high})


@pytest.mark.parametrize("solver", ["ilp", "greedy"])
def test_replay_is_exact_and_within_the_predicted_peak(captured, solver: str) -> None:  # type: ignore[no-untyped-def]
    name, model, x, region = captured
    # A 3 s limit: the MILP seldom proves optimality on these ~70-node graphs in that time, but
    # every schedule it returns is valid (warm-started from greedy), which is what is tested here.
    options = {"time_limit": 3.0} if solver == "ilp" else {}
    for budget in _budgets(region.graph, solver):
        sched = cs.solve(region.graph, budget, solver=solver, **options)
        assert simulate(region.graph, sched).valid
        mine = apply_graph(copy.deepcopy(model), sched, record=True)
        ref = copy.deepcopy(model)
        _step(mine, x, 0)  # the first call captures the region; measure the second
        _step(ref, x, 0)
        got, got_grads, got_x = _step(mine, x, 1)
        want, want_grads, want_x = _step(ref, x, 1)
        assert torch.equal(got.loss, want.loss), (name, budget)
        for a, b in zip(got_grads, want_grads, strict=True):
            assert torch.equal(a, b), (name, solver, budget)
        assert (got_x is None and want_x is None) or torch.equal(got_x, want_x)
        expected = [str(op) for op in sched.ops if isinstance(op, (Compute, Free))]
        trace = graph_trace(mine)
        assert trace is not None
        # The executor runs every op (frees of tangents and the sink are bookkeeping only).
        assert [t for t in trace if not t.startswith("free")] == [
            t for t in expected if not t.startswith("free")
        ]
        predicted = sched.predicted.peak_bytes + region.input_bytes
        assert got.peak_bytes <= predicted * 1.05 + 64, (
            name,
            solver,
            budget,
            got.peak_bytes,
            predicted,
        )


def test_recomputation_really_happens_below_store_all(captured) -> None:  # type: ignore[no-untyped-def]
    _, model, x, region = captured
    low = _budgets(region.graph)[0]
    sched = cs.solve(region.graph, low, solver="greedy")
    computes = [op.node for op in sched.ops if isinstance(op, Compute)]
    assert len(computes) > len(set(computes))  # some group runs twice
    mine = apply_graph(copy.deepcopy(model), sched, record=True)
    _step(mine, x, 0)
    trace = graph_trace(mine)
    assert trace is not None and len([t for t in trace if t.startswith("compute")]) == len(computes)


def test_dropout_groups_are_recomputed_with_the_masks_they_first_drew() -> None:
    """Dropout groups are ``replay_state``: at the smallest budget the schedule recomputes them,
    and the replay (each recomputation under the RNG state of the group's first run) is bitwise
    equal to eager autograd over two steps with different seeds."""
    model, x = _gpt_block()
    region = capture_region(model, (x,), repeats=1)
    g = region.graph
    random = [v for v in range(g.size) if g.rng[v] == "replay_state"]
    assert sum(g.names[v].startswith("empty_like") for v in random) == 3  # three dropouts
    assert [g.rng[v] for v in region.tangents] == ["forbid_recompute"]
    sched = cs.solve(g, cs.min_budget(g, "greedy"), solver="greedy")
    computes = [op.node for op in sched.ops if isinstance(op, Compute)]
    assert any(computes.count(v) > 1 for v in random)  # a mask is drawn again
    mine = apply_graph(copy.deepcopy(model), sched)
    ref = copy.deepcopy(model)
    for seed in (0, 1):
        got, got_grads, got_x = _step(mine, x, seed)
        got_next = torch.rand(4)  # the generator ends where eager leaves it
        want, want_grads, want_x = _step(ref, x, seed)
        want_next = torch.rand(4)
        assert torch.equal(got.loss, want.loss)
        assert all(torch.equal(a, b) for a, b in zip(got_grads, want_grads, strict=True))
        assert torch.equal(got_x, want_x)
        assert torch.equal(got_next, want_next)


def test_fingerprint_mismatch_and_refusals() -> None:
    model, x = _gpt_block()
    region = capture_region(model, (x,), repeats=0)
    sched = cs.solve(region.graph, 10**12, solver="store_all")
    other, _ = _mlp()
    with pytest.raises(FingerprintMismatchError, match="solve its graph"):
        apply_graph(other, sched)(torch.randn(4, 32)).sum().backward()
    applied = cs.apply(copy.deepcopy(model), sched)  # the public entry point
    assert cs.runtime.is_applied(applied)
    with pytest.raises(ApplyError, match="already"):
        apply_graph(applied, sched)
    with pytest.raises(ApplyError, match="already"):
        cs.apply(applied, sched)
    applied(x).sum().backward()
    with pytest.raises(FingerprintMismatchError, match="one input shape"):
        applied(torch.randn(2, 8, 32, requires_grad=True))
    with torch.no_grad():  # no grad: the module runs as before
        assert applied(torch.randn(2, 8, 32)).shape == (2, 8, 32)
    cs.runtime.remove(applied)
    assert not cs.runtime.is_applied(applied) and not remove_graph(applied)


def test_batchnorm_statistics_change_once_per_step() -> None:
    """BatchNorm in training mode at op level: a schedule that recomputes the normalisation still
    updates the running statistics (and the batch counter) once per step, as eager does."""
    import copy

    torch.manual_seed(0)
    layers = [m for _ in range(4) for m in (nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Tanh())]
    model = nn.Sequential(*layers)
    x = torch.randn(8, 16)
    region = capture_region(copy.deepcopy(model), (x,), repeats=0)
    assert region.buffer_writes  # the normalisations and the counters write buffers
    sched = cs.solve(region.graph, cs.min_budget(region.graph, "greedy"), solver="greedy")
    computes = [op.node for op in sched.ops if isinstance(op, Compute)]
    assert any(computes.count(v) > 1 for v in region.buffer_writes)  # a normalisation reruns
    ref, mine = copy.deepcopy(model), apply_graph(copy.deepcopy(model), sched)
    for _ in range(2):
        ref(x).sum().backward()
        mine(x).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(ref.buffers(), mine.buffers(), strict=True))
    assert all(
        torch.equal(a.grad, b.grad)
        for a, b in zip(ref.parameters(), mine.parameters(), strict=True)
    )


def test_second_backward_is_refused() -> None:
    model, x = _mlp()
    region = capture_region(model, (x,), repeats=0)
    sched = cs.solve(region.graph, 10**12, solver="store_all")
    applied = apply_graph(model, sched)
    loss = applied(x).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already back-propagated"):
        loss.backward()


def test_autograd_grad_and_inputs_without_grad() -> None:
    model, x = _mlp()
    region = capture_region(model, (x,), repeats=0)
    sched = cs.solve(region.graph, cs.min_budget(region.graph, solver="greedy"), solver="greedy")
    applied = apply_graph(copy.deepcopy(model), sched)
    params = list(applied.parameters())
    torch.manual_seed(0)
    got = torch.autograd.grad(applied(x).sum(), params)
    want = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.fixture(scope="module")
def gpt_region():  # type: ignore[no-untyped-def]
    model, inputs = models.gpt(layers=3, dim=32, heads=2, context=16, vocab=64, batch=2)
    region = capture_region(model, inputs, blocks=list(model.blocks), repeats=1)
    return model, inputs, region


def test_hierarchical_replays_exactly_on_the_whole_model(gpt_region) -> None:  # type: ignore[no-untyped-def]
    model, inputs, region = gpt_region
    g = region.graph
    low = cs.min_budget(g, solver="hierarchical")
    high = cs.solve(g, 10**15, solver="store_all").predicted.peak_bytes
    for budget in (low, (low + high) // 2, high):
        sched = cs.solve(g, budget, solver="hierarchical")
        assert sched.predicted.peak_bytes <= budget
        assert "3 distinct stage graphs solved" in sched.notes or "block-level" in sched.notes
        mine = cs.apply(copy.deepcopy(model), sched, record=True)
        ref = copy.deepcopy(model)
        for m in (mine, ref):
            m(*inputs).backward()  # the first call captures
            for p in m.parameters():
                p.grad = None
        torch.manual_seed(2)
        got = measure_step(mine, inputs, lambda loss: loss)
        torch.manual_seed(2)
        want = measure_step(ref, inputs, lambda loss: loss)
        assert torch.equal(got.loss, want.loss)
        for a, b in zip(mine.parameters(), ref.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad), budget
        assert cs.runtime.last_trace(mine) == [
            str(op) for op in sched.ops if isinstance(op, Compute)
        ]
        predicted = sched.predicted.peak_bytes + region.input_bytes
        assert got.peak_bytes <= predicted * 1.05 + 64, (budget, got.peak_bytes, predicted)


def test_hierarchical_is_faster_than_block_level_dp_at_equal_budgets(gpt_region) -> None:  # type: ignore[no-untyped-def]
    _, _, region = gpt_region
    g = region.graph
    low = cs.min_budget(g, solver="hierarchical", block_level=True)
    high = cs.solve(g, 10**15, solver="store_all").predicted.peak_bytes
    assert cs.min_budget(g, solver="hierarchical") <= low
    wins = 0
    budgets = [low + (high - low) * k // 6 for k in range(6)]
    for b in budgets:
        ours = cs.solve(g, b, solver="hierarchical")
        block = cs.solve(g, b, solver="hierarchical", block_level=True)
        assert simulate(g, ours).valid and simulate(g, block).valid
        # Block-level plans are among the hierarchical solver's: never slower.
        assert ours.predicted.compute_time <= block.predicted.compute_time * (1 + 1e-9)
        wins += ours.predicted.compute_time < block.predicted.compute_time * 0.999
    assert wins >= len(budgets) // 2


def test_hierarchical_cuts_segments_from_a_graph_without_blocks() -> None:
    """Captured without blocks, the graph is cut into segments of its forward (cheap crossings,
    balanced cost); hierarchical solves it below store-all and the replay is bitwise."""
    from checkpoint_solver.solvers._segments import find_segments

    model, x = _mlp()
    region = capture_region(model, (x,), repeats=1)
    g = region.graph
    assert not g.block
    blocks = find_segments(g)
    forward = [blocks[v] for v in g.ops if not g.is_backward[v]]
    assert forward == sorted(forward) and forward[-1] >= 2  # contiguous segments, in order
    assert all(blocks[v] >= 1 for v in g.ops if g.is_backward[v] and v != region.sink)
    low = cs.min_budget(g, solver="hierarchical")
    assert low < cs.min_budget(g, solver="store_all")
    sched = cs.solve(g, low, solver="hierarchical")
    assert simulate(g, sched).valid
    mine = apply_graph(copy.deepcopy(model), sched)
    got, got_grads, _ = _step(mine, x, 0)
    want, want_grads, _ = _step(copy.deepcopy(model), x, 0)
    assert torch.equal(got.loss, want.loss)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, want_grads, strict=True))


def test_hierarchical_refuses_a_graph_without_a_backward() -> None:
    graph = cs.Graph(
        names=("a", "b"),
        cost=(1.0, 1.0),
        out_bytes=(4, 4),
        is_backward=(False, False),
        edges=((0, 1),),
    )
    with pytest.raises(cs.errors.UnknownSolverError, match="training graph"):
        cs.solve(graph, 10**6, solver="hierarchical")


def test_auto_picks_by_size_and_time_limit_and_says_why(gpt_region) -> None:  # type: ignore[no-untyped-def]
    _, _, region = gpt_region
    g = region.graph
    budget = cs.min_budget(g, solver="hierarchical") * 5 // 4
    quick = cs.solve(g, budget, solver="auto", time_limit=0)
    assert "hierarchical (the graph has blocks)" in quick.notes
    assert "greedy (the fast heuristic, always)" in quick.notes
    assert "ilp" not in quick.notes.split("candidates:")[1]  # no MILP without time for it
    assert quick.solver in ("greedy", "hierarchical", "store_all")
    assert f"auto picked {quick.solver}" in quick.notes
    # With time, the MILP up to ILP_MAX_OPS op nodes, the LP rounding above.
    from checkpoint_solver.solvers.auto import ILP_MAX_OPS

    slow = cs.solve(g, budget, solver="auto", time_limit=2)
    picked = "ilp (" if len(g.ops) <= ILP_MAX_OPS else "ilp-rounding ("
    assert picked in slow.notes
    assert slow.predicted.compute_time <= quick.predicted.compute_time * (1 + 1e-9)


def test_fused_attention_is_one_node_and_replays_bitwise() -> None:
    """SDPA stays the fused kernel eager dispatches to (the CPU flash kernel and its backward),
    not a decomposition into matmuls and a softmax: the replay runs eager's kernels, bitwise."""
    import torch.nn.functional as F

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(32, 96)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(x).view(2, 16, 3, 2, 16).unbind(2)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    torch.manual_seed(0)
    model, x = Attention(), torch.randn(2, 16, 32)
    region = capture_region(model, (x,), repeats=0)
    ops = [str(n.target) for n in region.gm.graph.nodes if n.op == "call_function"]
    fused = [o for o in ops if "scaled_dot_product" in o]
    assert len(fused) == 2 and any("backward" in o for o in fused), fused
    assert not any("softmax" in o or "bmm" in o for o in ops)
    sched = cs.solve(region.graph, 10**12, solver="store_all")
    mine = apply_graph(copy.deepcopy(model), sched)
    got, got_grads, _ = _step(mine, x, 0)
    want, want_grads, _ = _step(model, x, 0)
    assert torch.equal(got.loss, want.loss)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, want_grads, strict=True))


class _LossAndLogits(nn.Module):
    """Returns ``(loss, logits)`` as Hugging Face language models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 8))

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.body(x)
        return nn.functional.cross_entropy(logits, target), logits


def test_outputs_beside_a_scalar_loss_get_zero_tangents_freed_after_use() -> None:
    """The logits' gradient is made as zeros where the backward reads it and freed after its
    last reader (autograd sends none: the caller back-propagates the loss), so the graph does
    not hold it to the sink; the replay is bitwise and the measured peak is the predicted one.
    A caller that does back-propagate the logits still gets exact gradients, with a warning."""
    torch.manual_seed(0)
    model = _LossAndLogits()
    x, target = torch.randn(64, 16), torch.randint(0, 8, (64,))
    region = capture_region(model, (x, target), repeats=1)
    g = region.graph
    assert region.zero_tangents == (False, True)
    loss_t, logits_t = region.tangents
    assert region.sink in g.succs[loss_t] and region.sink not in g.succs[logits_t]
    assert g.out_bytes[logits_t] == 64 * 8 * 4
    sched = cs.solve(g, 10**12, solver="store_all")
    frees = [i for i, op in enumerate(sched.ops) if op == Free(logits_t)]
    assert frees and frees[0] < len(sched.ops) - 2  # freed before the backward ends

    def run(m: nn.Module, both: bool) -> tuple[object, list]:
        for p in m.parameters():
            p.grad = None
        m_out = measure_step(
            m, (x, target), (lambda o: o[0] + o[1].sum()) if both else (lambda o: o[0])
        )
        return m_out, [p.grad for p in m.parameters()]

    mine = apply_graph(copy.deepcopy(model), sched)
    ref = copy.deepcopy(model)
    run(mine, False)
    got, got_grads = run(mine, False)
    want, want_grads = run(ref, False)
    assert torch.equal(got.loss, want.loss)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, want_grads, strict=True))
    assert got.peak_bytes <= sched.predicted.peak_bytes + region.input_bytes
    with pytest.warns(UserWarning, match="gradient reached output"):
        got, got_grads = run(mine, True)
    want, want_grads = run(ref, True)
    assert all(torch.equal(a, b) for a, b in zip(got_grads, want_grads, strict=True))


def test_hierarchical_is_never_slower_than_the_baseline_plans_within_their_peaks(
    gpt_region,
) -> None:  # type: ignore[no-untyped-def]
    """Per-block and checkpoint_sequential over the blocks, expanded, are among hierarchical's
    candidates: at each one's own peak, hierarchical is at least as fast."""
    from checkpoint_solver.solvers import hierarchical

    _, _, region = gpt_region
    g = region.graph
    curve = hierarchical._curves(
        g,
        block_level=True,
        option_budgets=5,
        option_solver="greedy",
        time_limit=5.0,
        mem_slots=2000,
    )[0]
    assert len(curve.rules) >= 3
    for _, peak, time in curve.rules:
        got = cs.solve(g, peak, solver="hierarchical")
        report = simulate(g, got)
        assert report.valid and report.peak_bytes <= peak
        assert got.predicted.compute_time <= time * (1 + 1e-9)
