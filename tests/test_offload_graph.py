"""Offload at op level: the torchtune-style baseline (every saved activation to host memory) and
``ilp-offload`` (the Checkmate MILP with offload), hand-traced, property-tested against ``ilp``,
and replayed by the op-level executor (bitwise, measured device and host memory = predicted)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from hypothesis import given, settings
from torch import nn

import checkpoint_solver as cs
from checkpoint_solver import zoo
from checkpoint_solver.problem.synthetic import linear_graph, uniform_chain
from checkpoint_solver.runtime.measure import measure_step
from checkpoint_solver.schedule import HostLink, OffloadValue, PrefetchValue
from checkpoint_solver.solvers import _milp
from checkpoint_solver.solvers.baseline_plans import offload_saved
from tests.strategies import assert_offload_never_slower, graphs
from tests.zoo.check import differences, reference, train

SLOW = HostLink(d2h_bytes_per_s=4, h2d_bytes_per_s=5)  # 10 bytes: 2.5 out, 2.0 back
LINK = HostLink(d2h_bytes_per_s=20, h2d_bytes_per_s=20)  # 10 bytes: half a node's time


def test_the_torchtune_style_plan_moves_each_saved_activation_while_the_graph_runs() -> None:
    """Traced by hand on linear_graph(4) (f0..f3 b3..b0, 10 bytes, 1 time unit each; f_i is
    read by f_{i+1} and b_i). f0 and f1 wait on the host (f2 and f3 are read again too soon):
    offloaded as computed, dropped after their forward reader (f0 after f1, f1 after f2), back
    one op before b1 and b0.

    Time: f0 [0,1], its copy [1,3.5]; f1 [1,2], its copy queued [3.5,6]; free(f0) waits to
    3.5; f2 [3.5,4.5]; free(f1) waits to 6; f3 [6,7]; prefetch(f1) [7,9]; b3 [7,8]; prefetch(f0)
    queued [9,11]; b2 waits for f1 to 9, [9,10]; b1 waits for f0 to 11, [11,12]; b0 [12,13]:
    8 of compute, 5 of waits. Memory: 40 at b3 (f2 f3 f1 b3) and at b2 (f1 b3 f0 b2), against
    store-all's 50; the host holds f0 and f1 (20)."""
    graph = linear_graph(4, out_bytes=10)
    s = offload_saved(graph, SLOW, min_offload_size=0)
    assert " ".join(map(str, s.ops)) == (
        "compute(0) offload(0) compute(1) offload(1) free(0) compute(2) free(1) compute(3) "
        "prefetch(1) compute(4) free(2) free(3) prefetch(0) compute(5) free(1) free(4) "
        "compute(6) free(0) free(5) compute(7) free(6) free(7)"
    )
    r = cs.simulate(graph, s)
    assert r.valid, r.violation
    assert (r.compute_time, r.stall_time, r.peak_bytes, r.host_peak_bytes) == (8.0, 5.0, 40, 20)
    assert s.predicted.peak_bytes == s.budget_bytes == 40
    assert cs.min_budget(graph, "store_all") == 50
    # torchtune's default threshold (1024 bytes) leaves these 10-byte values on the device.
    assert not any(isinstance(op, OffloadValue) for op in offload_saved(graph, SLOW).ops)


def test_the_torchtune_style_plan_refuses_what_it_cannot_run_with_reasons() -> None:
    with pytest.raises(cs.InvalidOptionError, match="offload_per_block"):
        offload_saved(uniform_chain(4), SLOW)  # type: ignore[arg-type]
    forward_only = cs.Graph(
        names=("a", "b"), cost=(1.0, 1.0), out_bytes=(1, 1), is_backward=(False, False),
        edges=((0, 1),),
    )  # fmt: skip
    with pytest.raises(cs.InvalidOptionError, match="no backward ops"):
        offload_saved(forward_only, SLOW)
    with pytest.raises(cs.InvalidOptionError, match="lookahead"):
        offload_saved(linear_graph(4), SLOW, lookahead=0)


@pytest.mark.parametrize("backend", _milp.available_backends())
def test_ilp_offload_is_strictly_faster_than_ilp_where_values_can_wait(backend: str) -> None:
    """linear_graph(8) at 40 bytes (4 values): ilp must recompute (23 time units); with a link
    that copies a value in half a node's time, six forward values wait on the host and every
    node runs once, without a wait: store-all's time, 16."""
    graph = linear_graph(8, out_bytes=10)
    plain = cs.solve(graph, 40, "ilp", backend=backend)
    off = cs.solve(graph, 40, "ilp-offload", link=LINK, backend=backend)
    r = cs.simulate(graph, off)
    assert r.valid and r.peak_bytes <= 40
    assert r.step_time == graph.store_all_time == 16.0 < plain.predicted.compute_time == 23.0
    assert off.predicted.stall_time == r.stall_time == 0.0
    assert sum(isinstance(op, OffloadValue) for op in off.ops) == 6
    assert off.link == LINK and "proven optimal" in off.notes
    assert cs.Schedule.from_dict(off.to_dict()) == off


@settings(max_examples=25)
@given(graph=graphs(max_nodes=10))
def test_ilp_offload_is_never_predicted_slower_than_ilp(graph) -> None:
    low = cs.min_budget(graph, "ilp")
    assert_offload_never_slower(graph, (low, low + 10), "ilp", "ilp-offload", LINK)


def test_ilp_offload_keeps_within_the_host_budget() -> None:
    """Room for two values on the host: fewer move, the host peak stays within it, and the
    schedule is still no slower than ilp's; room for none: ilp's schedule."""
    graph = linear_graph(8, out_bytes=10)
    plain = cs.solve(graph, 40, "ilp").predicted.compute_time
    two = HostLink(d2h_bytes_per_s=20, h2d_bytes_per_s=20, host_budget_bytes=20)
    off = cs.solve(graph, 40, "ilp-offload", link=two)
    r = cs.simulate(graph, off)
    assert r.valid and r.host_peak_bytes is not None and 0 < r.host_peak_bytes <= 20
    assert r.step_time < plain
    none = HostLink(d2h_bytes_per_s=20, h2d_bytes_per_s=20, host_budget_bytes=5)
    kept = cs.solve(graph, 40, "ilp-offload", link=none)
    assert not any(isinstance(op, OffloadValue) for op in kept.ops)
    assert kept.predicted.compute_time == plain and kept.predicted.host_peak_bytes == 0


def test_the_graph_tradeoff_curve_gains_ilp_offload_never_slower_than_ilp() -> None:
    """``tradeoff_rows(graph, [..., "ilp-offload"], link=)``: at every budget of the shared grid
    ilp-offload's time (waits included) is at most ilp's, and strictly less at one budget or more."""
    from checkpoint_solver.curves import tradeoff_rows

    graph = linear_graph(8, out_bytes=10)
    rows = tradeoff_rows(graph, ["ilp", "ilp-offload"], points=4, link=LINK)
    by = {(r.method, r.budget_bytes): r for r in rows if r.feasible}
    budgets = sorted(b for s, b in by if s == "ilp")
    assert len(budgets) == 4 and all(("ilp-offload", b) in by for b in budgets)
    for b in budgets:
        assert by["ilp-offload", b].overhead <= by["ilp", b].overhead + 1e-9
    assert any(by["ilp-offload", b].overhead < by["ilp", b].overhead for b in budgets)
    # Not in the default set (slow, like ilp), and refused by name without a link.
    assert "ilp-offload" not in {r.method for r in tradeoff_rows(graph, points=2, link=LINK)}
    with pytest.raises(cs.InvalidOptionError, match="HostLink"):
        tradeoff_rows(graph, ["ilp-offload"], points=2)


def test_ilp_offload_needs_a_link() -> None:
    with pytest.raises(cs.InvalidOptionError, match="HostLink"):
        cs.solve(linear_graph(4), 40, "ilp-offload")


def _profiled(model: nn.Module, inputs: tuple):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cs.profile(model, inputs, warmup=1, repeats=1, graph=True)


def _check_run(model, inputs, prof, sched, device_slack: float = 0.0) -> None:
    """Bitwise against plain autograd; the device peak is the prediction plus the inputs (which
    the graph leaves out), within `device_slack`; the host peak is the prediction."""
    ref = reference(model, inputs)
    m = copy.deepcopy(model)
    cs.apply(m, sched, prof)
    got = train(m, inputs)
    assert differences(ref, got) == []
    predicted = sched.predicted.peak_bytes + prof.measurement["input_bytes"]
    assert abs(got.peak_bytes / predicted - 1) <= device_slack, (got.peak_bytes, predicted)
    assert measure_step(m, inputs).host_peak_bytes == sched.predicted.host_peak_bytes


@pytest.mark.parametrize("name", ["unet", "rnn_steps"])
def test_the_torchtune_style_plan_trains_exactly_at_the_predicted_memory(name: str) -> None:
    """Every saved activation through the op-level executor's host pool: bitwise, device and
    host peaks exactly the predicted ones (an RNN's per-step input slices are views of the input,
    which the device keeps: they are not copied)."""
    model, inputs = zoo.build(name, 0)
    prof = _profiled(model, inputs)
    sched = offload_saved(prof.graph, HostLink.gbps(1), min_offload_size=0)
    assert sum(isinstance(op, OffloadValue) for op in sched.ops) >= 20
    assert sched.predicted.peak_bytes < cs.min_budget(prof.graph, "store_all")
    _check_run(model, inputs, prof, sched)


def test_an_ilp_offload_schedule_trains_exactly_at_the_predicted_memory() -> None:
    """A small MLP's op graph (unit op times, so the plan does not move with timing noise),
    ilp-offload halfway between ilp's minimum and store-all: it offloads, runs bitwise, its host
    peak is the predicted one and its device peak within 1 % (the loss's few bytes)."""
    import dataclasses

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))  # fmt: skip
    inputs = (torch.randn(16, 32),)
    prof = _profiled(model, inputs)
    graph = dataclasses.replace(prof.graph, cost=tuple(1.0 for _ in prof.graph.cost))
    low, high = cs.min_budget(graph, "ilp"), cs.min_budget(graph, "store_all")
    link = HostLink(d2h_bytes_per_s=2048, h2d_bytes_per_s=2048)  # a 2 KiB value per op
    sched = cs.solve(graph, (low + high) // 2, "ilp-offload", link=link)
    assert any(isinstance(op, PrefetchValue) for op in sched.ops)
    plain = cs.solve(graph, (low + high) // 2, "ilp").predicted.compute_time
    assert sched.predicted.compute_time + sched.predicted.stall_time < plain
    _check_run(model, inputs, prof, sched, device_slack=0.01)
