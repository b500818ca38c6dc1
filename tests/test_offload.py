"""Offload: the simulator's copy rules and timing (hand-traced), dp-offload, the offload
baselines, and the executor's copies (bitwise, measured device and host memory = predicted)."""

from __future__ import annotations

import copy
import warnings

import pytest
from hypothesis import given, settings

import checkpoint_solver as cs
from checkpoint_solver import zoo
from checkpoint_solver.problem.synthetic import uniform_chain
from checkpoint_solver.runtime.measure import measure_step
from checkpoint_solver.schedule import HostLink, Offload, Schedule, parse_op
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers.baseline_plans import (
    offload_per_block,
    profile_blocks,
    torch_per_block,
)
from tests.strategies import assert_offload_never_slower, chains, chains_with_values
from tests.test_offload_graph import _check_run as check_graph_run
from tests.zoo.check import differences, reference, train


def _ops(text: str) -> list:
    return [parse_op(t) for t in text.split()]


SLOW = HostLink(d2h_bytes_per_s=4, h2d_bytes_per_s=5)  # 10 bytes: 2.5 out, 2.0 back


def test_copies_run_beside_the_next_op_and_the_step_waits_for_them() -> None:
    """Traced by hand on a uniform chain (x = xbar = 10, every op 1 time unit):

    F_ck(1) at t=0..1; offload(a[1]) starts at 1 and ends at 3.5, beside F_ck(2) (1..2): the step
    waits 1.5. F_all(3) 3.5..4.5; prefetch(a[1]) 4.5..6.5 beside B(3) (4.5..5.5): waits 1.0.
    a[1] is on the device through F_ck(2) (peak 30), off it until the prefetch (which takes its
    10 bytes at once: 40), and B(3) peaks at 60 with it."""
    chain = uniform_chain(3, x=10)
    ops = _ops(
        "F_ck(1) offload(a[1]) F_ck(2) F_all(3) prefetch(a[1]) B(3) F_all(2) B(2) F_all(1) B(1)"
    )
    r = simulate_ops(chain, ops, link=SLOW)
    assert r.valid, r.violation
    assert r.compute_time == 8.0
    assert r.stall_time == pytest.approx(2.5)
    assert r.step_time == pytest.approx(10.5)
    assert r.host_peak_bytes == 10
    assert r.op_peaks == (20, 20, 30, 30, 40, 60, 40, 50, 30, 40)
    assert r.timeline == (20, 20, 20, 30, 40, 30, 40, 20, 30, 10)


def test_copies_on_one_stream_run_one_after_the_other() -> None:
    """Traced by hand (4 stages): both offloads go beside F_ck(3) (2..3) on the one d2h stream,
    a[1] 2..4.5 then a[2] 4.5..7: a wait of 4. F_all(4) 7..8; prefetch(a[2]) 8..10 beside B(4)
    (8..9): wait 1; F_all(3) 10..11; prefetch(a[1]) 11..13 beside B(3) (11..12): wait 1; then
    four ops to 17. Compute 11, waits 6."""
    chain = uniform_chain(4, x=10)
    ops = _ops(
        "F_ck(1) F_ck(2) offload(a[1]) offload(a[2]) F_ck(3) F_all(4) prefetch(a[2]) B(4) "
        "F_all(3) prefetch(a[1]) B(3) F_all(2) B(2) F_all(1) B(1)"
    )
    r = simulate_ops(chain, ops, link=SLOW)
    assert r.valid, r.violation
    assert r.compute_time == 11.0
    assert r.stall_time == pytest.approx(6.0)
    assert r.step_time == pytest.approx(17.0)
    assert r.host_peak_bytes == 20


def test_a_value_another_kept_boundary_holds_stays_on_the_device_when_one_is_offloaded() -> None:
    """Traced by hand (4 stages, x = 10; a 4-byte value v made by stage 1 and read by stages 2
    and 3, so in a[1] and a[2], counted once while either holds it). F_ck(2) keeps a[1], which
    holds v, so offloading a[2] copies only its own 6 bytes (the executor leaves v on the device:
    moving it would free nothing), and the prefetch brings back those 6, not a second v: after
    it, a[0] 10 + a[1] 6 + v 4 + a[3] 10 + a[4] 10 + a[2] 6 = 46 (50 with a second copy of v),
    and B(4) peaks at 66 (70)."""
    import dataclasses

    from checkpoint_solver.problem.chain import BoundaryValue

    chain = dataclasses.replace(uniform_chain(4, x=10), values=(BoundaryValue(4, 1, (2, 3)),))
    ops = _ops(
        "F_ck(1) F_ck(2) offload(a[2]) F_ck(3) F_all(4) prefetch(a[2]) B(4) F_all(3) B(3) "
        "F_all(2) B(2) F_all(1) B(1)"
    )
    r = simulate_ops(chain, ops, link=SLOW)
    assert r.valid, r.violation
    assert r.host_peak_bytes == 6
    assert r.timeline[:6] == (20, 26, 26, 30, 40, 46)
    assert r.peak_bytes == 66
    # Without a[1] kept (F_n(2) drops it), a[2] is v's only holder: v moves with it.
    r = simulate_ops(
        chain,
        _ops(
            "F_ck(1) F_n(2) offload(a[2]) F_ck(3) F_all(4) prefetch(a[2]) B(4) F_all(3) B(3) "
            "F_ck(1) F_all(2) B(2) F_all(1) B(1)"
        ),
        link=SLOW,
    )
    assert r.valid, r.violation
    assert r.host_peak_bytes == 10


def test_the_executor_leaves_on_the_device_what_another_kept_boundary_holds() -> None:
    """The hand-traced schedule above on a real chain: b1 makes h, b2 reads it and makes g, b3
    reads g and h, so a[1] = {h} and a[2] = {g, h}. Offloading a[2] while a[1] is kept moves g
    alone (h would free nothing); bitwise, device and host peaks the predicted ones."""
    import torch

    from checkpoint_solver.solvers._common import make_schedule
    from tests.profiling.test_profile import Skip

    torch.manual_seed(0)
    model, inputs = Skip(), (torch.randn(4, 16),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cs.profile(model, inputs, blocks=["b1", "b2", "b3"], warmup=0, repeats=1)
    chain = prof.chain
    assert chain.length == 4 and chain.x[1] == 4 * 32 * 4 and chain.x[2] == 2 * 4 * 32 * 4
    ops = _ops(
        "F_ck(1) F_ck(2) offload(a[2]) F_ck(3) F_all(4) prefetch(a[2]) B(4) F_all(3) B(3) "
        "F_all(2) B(2) F_all(1) B(1)"
    )
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    r = simulate_ops(chain, ops, link=link)
    assert r.valid, r.violation
    sched = make_schedule(
        chain, r.peak_bytes, ops, solver="manual", peak_bytes=r.peak_bytes,
        compute_time=r.compute_time, link=link,
    )  # fmt: skip
    assert sched.predicted.host_peak_bytes == 4 * 32 * 4  # g only
    _check_run(model, inputs, prof, sched)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("F_ck(1) prefetch(a[1])", "no copy on the host"),
        ("F_ck(1) offload(a[1]) F_ck(2) offload(a[1])", "not kept plain"),
        ("F_ck(1) F_ck(2) offload(a[1]) F_n(3) prefetch(a[1]) F_all(2)", "being prefetched"),
        ("F_ck(1) F_all(2) offload(a[1])", "tape abar[2]"),
        ("F_ck(1) offload(a[1]) F_all(2)", "tape abar[2]"),
    ],
)
def test_copy_rules_are_violations_with_reasons(text: str, why: str) -> None:
    r = simulate_ops(uniform_chain(3, x=10), _ops(text), link=SLOW)
    assert r.violation is not None and why in r.violation.reason, r.violation


def test_copies_need_a_link_and_respect_the_host_budget() -> None:
    chain = uniform_chain(3, x=10)
    ops = _ops("F_ck(1) offload(a[1]) F_ck(2)")
    r = simulate_ops(chain, ops)
    assert r.violation is not None and "no link" in r.violation.reason
    tight = HostLink(d2h_bytes_per_s=4, h2d_bytes_per_s=5, host_budget_bytes=9)
    r = simulate_ops(chain, ops, link=tight)
    assert r.violation is not None and "host budget" in r.violation.reason


def test_an_offload_schedule_round_trips_through_json_with_its_link(tmp_path) -> None:
    chain = uniform_chain(8, x=100)
    link = HostLink(d2h_bytes_per_s=200.0, h2d_bytes_per_s=200.0, host_budget_bytes=10_000)
    s = cs.solve(chain, 650, "dp-offload", link=link)
    assert any(isinstance(op, Offload) for op in s.ops)
    back = Schedule.load(s.save(tmp_path / "s.json"))
    assert back == s
    assert cs.simulate(chain, back).host_peak_bytes == s.predicted.host_peak_bytes
    with pytest.raises(cs.FileFormatError, match="no link"):
        s.replace(link=None)


def test_dp_offload_is_strictly_faster_than_dp_where_offload_frees_a_checkpoint() -> None:
    """Uniform chain, 8 stages of 100 bytes, copies half a stage long: at 650 bytes dp needs 26
    time units; offloading the block inputs (Unsloth's plan and better) takes 22, no waits."""
    chain = uniform_chain(8, x=100)
    link = HostLink(d2h_bytes_per_s=200, h2d_bytes_per_s=200)
    dp = cs.solve(chain, 650, "dp")
    off = cs.solve(chain, 650, "dp-offload", link=link)
    assert dp.predicted.compute_time == 26.0
    assert off.predicted.compute_time + off.predicted.stall_time == 22.0
    assert cs.simulate(chain, off).peak_bytes <= 650


@settings(max_examples=25, deadline=None)
@given(chain=chains(min_length=2))
def test_dp_offload_is_never_predicted_slower_than_dp(chain) -> None:
    link = HostLink(d2h_bytes_per_s=20.0, h2d_bytes_per_s=30.0)
    low = cs.min_budget(chain, "dp")
    high = max(low, cs.min_budget(chain, "store_all"))
    budgets = sorted({low, (low + high) // 2, high})
    assert_offload_never_slower(chain, budgets, "dp", "dp-offload", link)


@settings(max_examples=20, deadline=None)
@given(chain=chains_with_values(min_length=4))
def test_dp_offload_is_never_slower_than_the_offload_baselines_within_their_peaks(chain) -> None:
    """On chains whose boundaries share values (skips, masks, an encoder's output), the
    baselines' simulated peaks count a value two kept boundaries hold once, where dp-offload's
    recursion counts it per boundary: it weighs their plans, so at each baseline's own peak it
    is at most as slow (waits included)."""
    link = HostLink(d2h_bytes_per_s=20.0, h2d_bytes_per_s=30.0)
    for keep_last in (True, False):
        base = offload_per_block(chain, link, keep_last=keep_last)
        budget = base.predicted.peak_bytes
        off = cs.solve(chain, budget, "dp-offload", link=link)
        r = cs.simulate(chain, off)
        assert r.valid and r.peak_bytes <= budget, r.violation
        limit = base.predicted.compute_time + base.predicted.stall_time
        assert r.step_time <= limit * (1 + 1e-9)


def test_the_offload_baselines_hold_less_than_per_block_at_its_time() -> None:
    chain = uniform_chain(6, x=100)
    link = HostLink(d2h_bytes_per_s=200, h2d_bytes_per_s=200)
    per_block = cs.simulate(chain, torch_per_block(chain))
    for keep_last, host in ((True, 300), (False, 400)):
        s = offload_per_block(chain, link, keep_last=keep_last)
        r = cs.simulate(chain, s)
        assert r.valid, r.violation
        assert r.step_time == per_block.compute_time
        assert r.peak_bytes == 700 < per_block.peak_bytes == 1000
        assert r.host_peak_bytes == host


def _profiled(name: str, graph: bool = False):
    model, inputs = zoo.build(name, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cs.profile(model, inputs, warmup=1, repeats=1, graph=graph)
    return model, inputs, prof


def _check_run(model, inputs, prof, sched) -> None:
    ref = reference(model, inputs)
    m = copy.deepcopy(model)
    cs.apply(m, sched, prof)
    got = train(m, inputs)
    assert differences(ref, got) == []
    assert got.peak_bytes == sched.predicted.peak_bytes
    assert measure_step(m, inputs).host_peak_bytes == sched.predicted.host_peak_bytes


@pytest.mark.parametrize(
    "name",
    [
        "resnet",
        "unet",
        "rnn_steps",
        pytest.param("gpt2", marks=pytest.mark.slow),
        pytest.param("t5", marks=pytest.mark.slow),
    ],
)
def test_offloading_every_block_input_trains_exactly_at_the_predicted_memory(name: str) -> None:
    """The Unsloth-style plan through the executor's host pool (CPU): gradients, buffers and
    losses bitwise; the measured device peak and host peak are the simulator's. GPT-2's blocks
    are passed its position ids, which the embedding's kept tape holds anyway: they are not
    copied (they were, 4 KiB per boundary, over the predicted host peak)."""
    model, inputs, prof = _profiled(name)
    first, count = profile_blocks([s.name for s in prof.stages])
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    sched = offload_per_block(prof.chain, link, first, count)
    assert sum(isinstance(op, Offload) for op in sched.ops) >= 2
    _check_run(model, inputs, prof, sched)


@pytest.mark.parametrize("name", ["unet", "rnn_steps"])
def test_dp_offload_at_per_blocks_peak_trains_exactly(name: str) -> None:
    """dp-offload at torch per-block's own peak offloads boundaries on these models (with unit
    stage times); the run is bitwise and its device and host peaks are the predicted ones."""
    import dataclasses

    model, inputs, prof = _profiled(name)
    first, count = profile_blocks([s.name for s in prof.stages])
    # Unit stage times (the fingerprint leaves timings out): the plan does not move with the
    # machine's timing noise.
    n = prof.chain.length
    chain = dataclasses.replace(prof.chain, uf=(1.0,) * n, ub=(2.0,) * n)
    budget = torch_per_block(chain, first, count).predicted.peak_bytes
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    sched = cs.solve(chain, budget, "dp-offload", link=link)
    assert any(isinstance(op, Offload) for op in sched.ops)
    _check_run(model, inputs, prof, sched)


def test_the_readme_offload_example_runs() -> None:
    import re
    import textwrap
    from pathlib import Path

    from checkpoint_solver.schedule import OffloadValue

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = text.index("## Offload: keep, recompute, or move to host memory")
    end = text.index("\n## ", start + 5)
    chain_code, graph_code = (
        textwrap.dedent(c) for c in re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    )
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(compile(chain_code, "README offload example", "exec"), namespace)
    sched = namespace["sched"]
    assert isinstance(sched, cs.Schedule) and sched.link is not None
    assert sched.predicted.peak_bytes <= 6 * 2**30
    namespace = {"__name__": "__readme__"}
    exec(compile(graph_code, "README op-level offload example", "exec"), namespace)
    graph, sched, tt = namespace["graph"], namespace["sched"], namespace["torchtune"]
    assert isinstance(sched, cs.Schedule) and sched.solver == "ilp-offload"
    assert cs.simulate(graph, sched).peak_bytes <= sched.budget_bytes  # type: ignore[arg-type]
    assert any(isinstance(op, OffloadValue) for op in sched.ops)
    assert any(isinstance(op, OffloadValue) for op in tt.ops)  # type: ignore[attr-defined]


def test_measuring_the_link_needs_a_cuda_device() -> None:
    with pytest.raises(cs.InvalidArgumentError, match=r"HostLink\.gbps"):
        cs.measure_link("cpu")


# -- op level --------------------------------------------------------------------------------


def test_a_graph_copy_runs_until_the_free_or_the_read_that_waits_for_it() -> None:
    """Traced by hand on linear_graph(3) (f0 f1 f2 b2 b1 b0, 10 bytes, 1 time unit each):
    offload(0) at t=2 runs 2..4.5 beside f2 (2..3); free(0) waits 1.5. prefetch(0) at 5.5 runs
    5.5..7.5; b1, which reads f0, waits 2.0 for it. Compute 6, waits 3.5; f0 is on the host from
    the offload to b1 (10 bytes), and back on the device from the prefetch on."""
    from checkpoint_solver.problem.synthetic import linear_graph

    graph = linear_graph(3, out_bytes=10)
    ops = _ops(
        "compute(0) compute(1) offload(0) compute(2) free(0) compute(3) free(2) prefetch(0) "
        "free(1) compute(4) free(0) free(3) compute(5)"
    )
    r = simulate_ops(graph, ops, link=SLOW)
    assert r.valid, r.violation
    assert r.compute_time == 6.0
    assert r.stall_time == pytest.approx(3.5)
    assert r.host_peak_bytes == 10
    assert r.op_peaks == (10, 20, 20, 30, 20, 30, 20, 30, 20, 30, 20, 10, 20)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("compute(0) prefetch(0)", "no copy on the host"),
        ("compute(0) compute(1) free(0) offload(0)", "not live on the device"),
        ("compute(0) offload(0) offload(0)", "already has a copy"),
        ("compute(0) offload(0) prefetch(0)", "already live"),
    ],
)
def test_graph_copy_rules_are_violations_with_reasons(text: str, why: str) -> None:
    from checkpoint_solver.problem.synthetic import linear_graph

    r = simulate_ops(linear_graph(3, out_bytes=10), _ops(text), link=SLOW)
    assert r.violation is not None and why in r.violation.reason, r.violation


def _graph_profiled(name: str):
    model, inputs, prof = _profiled(name, graph=True)
    assert prof.graph is not None
    return model, inputs, prof


def test_hierarchical_with_a_link_moves_boundaries_and_is_never_slower() -> None:
    """On the unrolled RNN's op graph, at three budgets: valid, within the budget, never
    predicted slower than hierarchical without the link, and offloading where memory is short."""
    from checkpoint_solver.schedule import OffloadValue

    _, _, prof = _graph_profiled("rnn_steps")
    graph = prof.graph
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    low, high = cs.min_budget(graph, "hierarchical"), cs.min_budget(graph, "store_all")
    moved = 0
    for f in (0.1, 0.3, 0.6):
        budget = int(low + (high - low) * f)
        plain = cs.solve(graph, budget, "hierarchical")
        off = cs.solve(graph, budget, "hierarchical", link=link)
        r = cs.simulate(graph, off)
        assert r.valid and r.peak_bytes <= budget
        assert r.step_time <= plain.predicted.compute_time * (1 + 1e-9)
        moved += sum(isinstance(op, OffloadValue) for op in off.ops)
    assert moved > 0


@pytest.mark.parametrize("name", ["resnet", "unet", "rnn_steps"])
def test_an_offload_plan_on_the_op_graph_trains_exactly_at_the_predicted_memory(name: str) -> None:
    """The Unsloth-style plan expanded onto the op graph (copies of the boundaries' values) and
    replayed by the op-level executor: bitwise, the device peak within 1 % of the prediction
    (plus the inputs, which the graph leaves out), the host peak the predicted one."""
    from checkpoint_solver.schedule import OffloadValue
    from checkpoint_solver.solvers.hierarchical import chain_schedule_on_graph

    model, inputs, prof = _graph_profiled(name)
    first, count = profile_blocks([s.name for s in prof.stages])
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    sched = chain_schedule_on_graph(prof.graph, offload_per_block(prof.chain, link, first, count))
    assert sum(isinstance(op, OffloadValue) for op in sched.ops) >= 3
    back = Schedule.from_dict(sched.to_dict())
    assert back == sched
    check_graph_run(model, inputs, prof, sched, device_slack=0.01)


def test_exporting_an_offload_schedule_as_torch_policies_is_refused() -> None:
    model, inputs, prof = _graph_profiled("rnn_steps")
    first, count = profile_blocks([s.name for s in prof.stages])
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    sched = offload_per_block(prof.chain, link, first, count)
    with pytest.raises(cs.ApplyError, match=r"cs\.apply"):
        cs.export_policy(model, sched, prof, inputs)


def test_the_trade_off_curve_gains_the_offload_solver_and_it_is_never_slower() -> None:
    """With a link, the curve has dp-offload and the Unsloth-style point; at every budget of the
    shared grid dp-offload's time (waits included) is at most dp's."""
    from checkpoint_solver.curves import tradeoff_rows

    chain = cs.load_problem("example:transformer-chain")
    rows = tradeoff_rows(chain, ["dp"], points=8, link=HostLink.gbps(25))
    dp = {r.budget_bytes: r for r in rows if r.method == "dp"}
    off = {r.budget_bytes: r for r in rows if r.method == "dp-offload"}
    assert dp.keys() == off.keys() and len(dp) >= 6
    for b, r in off.items():
        assert r.feasible == dp[b].feasible
        if r.feasible:
            assert r.compute_time <= dp[b].compute_time * (1 + 1e-9)
    assert any(
        r.compute_time < dp[b].compute_time * (1 - 1e-3) for b, r in off.items() if r.feasible
    )
    assert any(r.method == "unsloth-style" for r in rows)
