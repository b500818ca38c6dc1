"""CUDA paths: profiling with CUDA events and memory statistics, replay with CUDA RNG states,
predicted peaks against the tracker and ``torch.cuda.max_memory_allocated``, whole step included.

Marked ``gpu``: run by ``bash benchmarks/gpu_check.sh`` on a lent GPU machine (skipped without
CUDA). ``CS_TEST_DEVICE=cpu python -m pytest -m gpu tests/test_gpu.py`` runs the same bodies on
the CPU (the CUDA-only assertions then skip), which checks the tests themselves here.
"""

from __future__ import annotations

import copy
import os
import warnings

import pytest

torch = pytest.importorskip("torch")

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver import models  # noqa: E402
from checkpoint_solver.profiling.chain import inputs_to  # noqa: E402
from checkpoint_solver.runtime.measure import measure_step, train_step  # noqa: E402

DEVICE = os.environ.get("CS_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
    ),
]
CUDA = DEVICE == "cuda"


def _gpt(dropout: float = 0.0):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model, inputs = models.gpt(
        layers=4, dim=256, heads=4, context=256, vocab=2048, batch=8, dropout=dropout
    )
    return model.to(DEVICE), inputs_to(inputs, DEVICE)


def _profile(model, inputs, **kw):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cs.profile(model, inputs, warmup=1, repeats=3, graph=False, **kw)


def test_profile_on_the_device_times_and_sizes_every_stage() -> None:
    model, inputs = _gpt()
    prof = _profile(model, inputs)
    assert prof.source["device"].startswith(DEVICE)
    assert all(t > 0 for t in (*prof.chain.uf, *prof.chain.ub))
    if CUDA:
        assert "NVIDIA" in prof.source["device_name"] or prof.source["device_name"]
    high = cs.min_budget(prof.chain, "store_all")
    measured = prof.measurement["activation_peak_bytes"]
    assert abs(measured / high - 1) <= 0.03, (measured, high)


def test_replay_with_dropout_reproduces_plain_autograd_on_the_device() -> None:
    """Recomputed stages draw the same dropout masks (CUDA RNG states saved and restored): the
    loss and gradients match plain autograd's (bitwise on CPU; on CUDA to rounding, since some
    backward kernels accumulate with atomics)."""
    model, inputs = _gpt(dropout=0.1)
    prof = _profile(model, inputs)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    assert any(type(op).__name__ in ("FwdNoTape", "FwdCheckpoint") for op in sched.ops)
    plain, ours = copy.deepcopy(model), cs.apply(copy.deepcopy(model), sched, prof)
    torch.manual_seed(3)
    want = train_step(plain, inputs)
    torch.manual_seed(3)
    got = train_step(ours, inputs)
    pairs = list(zip(plain.parameters(), ours.parameters(), strict=True))
    if CUDA:
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
        for a, b in pairs:
            assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    else:
        assert torch.equal(got, want)
        assert all(torch.equal(a.grad, b.grad) for a, b in pairs)


@pytest.mark.parametrize("which", ["store_all", "dp"])
def test_predicted_peaks_are_the_measured_ones_on_the_device(which: str) -> None:
    """Activation peak: the tracker within 3 %; on CUDA, ``max_memory_allocated`` above the
    step's start (which also holds the parameter gradients) within 10 % of the prediction plus
    the gradients (the allocator rounds blocks; cuBLAS keeps a workspace)."""
    model, inputs = _gpt()
    prof = _profile(model, inputs)
    chain = prof.chain
    low, high = cs.min_budget(chain, "dp"), cs.min_budget(chain, "store_all")
    sched = cs.solve(chain, high if which == "store_all" else (low + high) // 2, which)
    m = cs.apply(copy.deepcopy(model), sched, prof)
    measure_step(m, inputs)
    for p in m.parameters():
        p.grad = None
    got = measure_step(m, inputs)
    predicted = sched.predicted.peak_bytes
    assert abs(got.peak_bytes / predicted - 1) <= 0.03, (got.peak_bytes, predicted)
    if CUDA:
        grads = sum(p.numel() * p.element_size() for p in m.parameters())
        assert got.cuda_peak_bytes is not None and got.cuda_reserved_bytes is not None
        assert abs(got.cuda_peak_bytes / (predicted + grads) - 1) <= 0.10, (
            got.cuda_peak_bytes,
            predicted + grads,
        )
        assert got.cuda_reserved_bytes >= got.cuda_step_peak_bytes  # type: ignore[operator]


def test_whole_step_prediction_is_the_measured_step_on_the_device() -> None:
    model, inputs = _gpt()
    prof = _profile(model, inputs, optimizer=torch.optim.AdamW(model.parameters()))
    chain = prof.chain
    low, high = cs.min_budget(chain, "dp"), cs.min_budget(chain, "store_all")
    sched = cs.solve(chain, (low + high) // 2, "dp", headroom=0.05)
    m = cs.apply(copy.deepcopy(model), sched, prof)
    opt = torch.optim.AdamW(m.parameters())
    measure_step(m, inputs, optimizer=opt)
    got = measure_step(m, inputs, optimizer=opt)
    predicted = cs.simulate(chain, sched).peak_bytes
    assert got.step_peak_bytes is not None
    assert abs(got.step_peak_bytes / predicted - 1) <= 0.03, (got.step_peak_bytes, predicted)
    if CUDA:
        assert got.cuda_step_peak_bytes is not None
        assert abs(got.cuda_step_peak_bytes / predicted - 1) <= 0.10, (
            got.cuda_step_peak_bytes,
            predicted,
        )


def test_an_exported_policy_on_the_device_is_bitwise_at_its_predicted_peak() -> None:
    # torch's own checkpoint regions (cs.export_policy) with CUDA RNG states (dropout) and,
    # on CUDA, max_memory_allocated beside the tracker.
    model, inputs = _gpt(dropout=0.1)
    plain = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cs.profile(model, inputs, warmup=1, repeats=2)
    graph = prof.graph
    assert graph is not None
    low, high = cs.min_budget(graph, "hierarchical"), cs.min_budget(graph, "store_all")
    policy = cs.export_policy(
        model, cs.solve(graph, (low + high) // 2, "hierarchical"), prof, inputs
    )
    assert any(b.checkpoint for b in policy.blocks)
    policy.apply(model)
    for m in (model, plain):
        m.zero_grad(set_to_none=True)
        torch.manual_seed(4)
        got = measure_step(m, inputs)
        if m is model:
            measured = got
    for a, b in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)
    assert abs(measured.peak_bytes / policy.peak_bytes - 1) <= 0.03
    if CUDA:
        assert measured.cuda_peak_bytes is not None
        # Allocated during the step: the activations and the parameters' gradients.
        grads = sum(p.numel() * p.element_size() for p in model.parameters())
        assert measured.cuda_peak_bytes <= (policy.peak_bytes + grads) * 1.10


def test_offload_copies_on_side_streams_train_as_plain_autograd_at_the_predicted_peak() -> None:
    """The Unsloth-style plan and dp-offload through the executor on the device: block inputs
    copied to pinned memory and back on their own streams (CUDA; the host pool on CPU); the
    gradients are plain autograd's, the tracker's device and host peaks the simulator's, and on
    CUDA ``max_memory_allocated`` within 10 % of the prediction plus the gradients."""
    from checkpoint_solver.schedule import HostLink, Offload
    from checkpoint_solver.solvers.baseline_plans import (
        offload_per_block,
        profile_blocks,
        torch_per_block,
    )

    model, inputs = _gpt()
    prof = _profile(model, inputs)
    link = cs.measure_link(DEVICE) if CUDA else HostLink.gbps(25)
    first, count = profile_blocks([s.name for s in prof.stages])
    peak = torch_per_block(prof.chain, first, count).predicted.peak_bytes
    for sched in (
        offload_per_block(prof.chain, link, first, count),
        cs.solve(prof.chain, peak, "dp-offload", link=link),
    ):
        plain, ours = copy.deepcopy(model), cs.apply(copy.deepcopy(model), sched, prof)
        torch.manual_seed(5)
        want = measure_step(plain, inputs)
        measure_step(ours, inputs)
        for p in ours.parameters():
            p.grad = None
        torch.manual_seed(5)
        got = measure_step(ours, inputs)
        pairs = list(zip(plain.parameters(), ours.parameters(), strict=True))
        if CUDA:
            assert torch.allclose(got.loss, want.loss, rtol=1e-5, atol=1e-6)
            for a, b in pairs:
                assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6)
        else:
            assert torch.equal(got.loss, want.loss)
            assert all(torch.equal(a.grad, b.grad) for a, b in pairs)
        predicted = sched.predicted
        assert abs(got.peak_bytes / predicted.peak_bytes - 1) <= 0.03
        if any(isinstance(op, Offload) for op in sched.ops):
            assert got.host_peak_bytes == predicted.host_peak_bytes
        if CUDA:
            grads = sum(p.numel() * p.element_size() for p in ours.parameters())
            assert got.cuda_peak_bytes is not None
            assert got.cuda_peak_bytes <= (predicted.peak_bytes + grads) * 1.10


def test_op_level_offload_of_every_saved_activation_trains_at_the_predicted_peak() -> None:
    """The torchtune-style plan at op level (every saved activation to host memory, nothing
    recomputed) through the op-level executor on the device: plain autograd's gradients, the
    tracker's device peak within 3 % of the prediction plus the inputs, the host peak the
    simulator's; on CUDA the copies run on side streams into pinned memory."""
    from checkpoint_solver.schedule import HostLink, OffloadValue
    from checkpoint_solver.solvers.baseline_plans import offload_saved

    torch.manual_seed(0)
    model, inputs = models.gpt(
        layers=2, dim=128, heads=4, context=128, vocab=512, batch=4, dropout=0.0
    )
    model, inputs = model.to(DEVICE), inputs_to(inputs, DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cs.profile(model, inputs, warmup=1, repeats=1, graph=True)
    assert prof.graph is not None
    link = cs.measure_link(DEVICE) if CUDA else HostLink.gbps(25)
    sched = offload_saved(prof.graph, link)
    assert any(isinstance(op, OffloadValue) for op in sched.ops)
    plain, ours = copy.deepcopy(model), cs.apply(copy.deepcopy(model), sched, prof)
    want = measure_step(plain, inputs)
    for p in ours.parameters():
        p.grad = None
    got = measure_step(ours, inputs)
    pairs = list(zip(plain.parameters(), ours.parameters(), strict=True))
    if CUDA:
        assert torch.allclose(got.loss, want.loss, rtol=1e-5, atol=1e-6)
        assert all(torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6) for a, b in pairs)
    else:
        assert torch.equal(got.loss, want.loss)
        assert all(torch.equal(a.grad, b.grad) for a, b in pairs)
    predicted = sched.predicted.peak_bytes + prof.measurement["input_bytes"]
    assert abs(got.peak_bytes / predicted - 1) <= 0.03, (got.peak_bytes, predicted)
    assert got.host_peak_bytes == sched.predicted.host_peak_bytes
