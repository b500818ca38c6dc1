"""Baselines with apply's interface: same gradients as plain autograd, less memory, undoable."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver import models  # noqa: E402
from checkpoint_solver.runtime import baselines  # noqa: E402
from checkpoint_solver.runtime.measure import measure_step  # noqa: E402

CASES = {
    "mlp": lambda: models.mlp(depth=6, width=32, hidden=64, batch=8),
    "gpt": lambda: models.gpt(layers=6, dim=32, heads=4, context=16, batch=2, vocab=64),
}


@pytest.mark.parametrize("name", list(CASES))
def test_baselines_are_exact_and_save_memory(name: str) -> None:
    model, inputs = CASES[name]()
    ref = copy.deepcopy(model)
    torch.manual_seed(7)
    plain = measure_step(ref, inputs)
    variants = {
        "none": baselines.no_checkpoint,
        "per-block": baselines.checkpoint_per_block,
        "sequential-2": lambda m: baselines.checkpoint_sequential(m, 2),
        "sequential-3": lambda m: baselines.checkpoint_sequential(m, 3),
    }
    peaks = {}
    for label, wrap in variants.items():
        m = wrap(copy.deepcopy(model))
        torch.manual_seed(7)
        got = measure_step(m, inputs)
        assert torch.equal(got.loss, plain.loss), label
        for p, q in zip(m.parameters(), ref.parameters(), strict=True):
            assert torch.equal(p.grad, q.grad), label
        peaks[label] = got.peak_bytes
        baselines.remove(m)
        assert not any("forward" in vars(sub) for sub in m.modules())  # plain again

    assert peaks["none"] == plain.peak_bytes
    assert peaks["per-block"] <= min(peaks["sequential-2"], peaks["sequential-3"])
    assert max(peaks["sequential-2"], peaks["sequential-3"]) < peaks["none"]


def test_baseline_refusals() -> None:
    model, _ = CASES["gpt"]()
    with pytest.raises(cs.ApplyError, match="segments=9 is not valid for 6 blocks"):
        baselines.checkpoint_sequential(model, 9)
    baselines.checkpoint_per_block(model)
    with pytest.raises(cs.ApplyError, match="already has a baseline applied"):
        baselines.no_checkpoint(model)
    # One record for every kind: a schedule is refused on a model with a baseline, and the
    # front door's remove undoes a baseline too.
    sched = cs.solve(cs.load_problem("example:transformer-chain"), "64GiB", "store_all")
    with pytest.raises(cs.ApplyError, match="already has a baseline applied"):
        cs.apply(model, sched)
    assert cs.runtime.is_applied(model)
    cs.runtime.remove(model)
    assert not cs.runtime.is_applied(model)
    baselines.checkpoint_per_block(model)
    baselines.remove(model)
    with pytest.raises(cs.ApplyError, match="no baseline"):
        baselines.remove(model)
