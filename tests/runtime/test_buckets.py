"""Shape buckets on a real model: one schedule per sequence-length bucket, each step within its
bucket's promise, gradients bitwise equal to plain autograd."""

from __future__ import annotations

import copy
import warnings

import pytest

torch = pytest.importorskip("torch")

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver import buckets, models  # noqa: E402
from checkpoint_solver.errors import ApplyError, InvalidProblemError  # noqa: E402
from checkpoint_solver.runtime.buckets import bucket_in_use  # noqa: E402
from checkpoint_solver.runtime.measure import measure_step, train_step  # noqa: E402


def _model():  # type: ignore[no-untyped-def]
    model, (idx, tgt) = models.gpt(
        layers=4, dim=64, heads=2, context=128, vocab=256, batch=4, dropout=0.1
    )

    def at(t: int):  # type: ignore[no-untyped-def]
        return (idx[:, :t].contiguous(), tgt[:, :t].contiguous())

    return model, at


def _shapes(model, at):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return buckets.profile_shapes(model, [at(32), at(64), at(128)], warmup=1, repeats=1)


def test_the_fit_at_an_unprofiled_length_is_the_profile_there() -> None:
    model, at = _model()
    shapes = _shapes(model, at)
    assert shapes.sizes == (32, 64, 128) and shapes.dims == ((0, 1), (1, 1))
    fitted = shapes.fit.at(96)
    real = cs.profile(model, at(96), warmup=1, repeats=1, graph=False).chain
    assert (fitted.x, fitted.xbar, fitted.delta) == (real.x, real.xbar, real.delta)
    high = cs.min_budget(real, "store_all")
    assert abs(cs.min_budget(fitted, "store_all") / high - 1) <= 0.01


def test_training_on_three_lengths_in_turn_keeps_each_buckets_promise() -> None:
    model, at = _model()
    shapes = _shapes(model, at)
    budget = 2 * cs.min_budget(shapes.fit.at(128), "dp")
    bk = buckets.solve_buckets(shapes, budget, "dp", edges=[32, 64, 96, 128])
    assert len(bk.schedules) == 4 and "<=     96" in bk.table()
    applied = buckets.apply_buckets(copy.deepcopy(model), bk)
    for t, bucket in ((32, 0), (128, 3), (64, 1), (96, 2), (40, 1), (128, 3)):
        torch.manual_seed(1)
        measure_step(applied, at(t))
        torch.manual_seed(1)
        got = measure_step(applied, at(t)).peak_bytes
        assert bucket_in_use(applied) == bucket
        predicted = bk.schedules[bucket].predicted.peak_bytes
        assert got <= predicted * 1.03, (t, got, predicted)
        if t in bk.edges:
            assert got >= predicted * 0.97, (t, got, predicted)
        ref = copy.deepcopy(model)
        for p in (*ref.parameters(), *applied.parameters()):
            p.grad = None
        torch.manual_seed(2)
        want = train_step(ref, at(t))
        torch.manual_seed(2)
        loss = train_step(applied, at(t))
        assert torch.equal(loss, want)
        for a, b in zip(ref.parameters(), applied.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad)
    with pytest.raises(ApplyError, match="above the largest bucket"):
        bk.bucket_of(129)
    cs.runtime.remove(applied)


def test_examples_must_vary_in_one_dimension() -> None:
    model, at = _model()
    idx, tgt = at(32)
    with pytest.raises(InvalidProblemError, match="more than one dimension"):
        buckets.profile_shapes(model, [(idx, tgt), (idx[:2, :16], tgt[:2, :16])])
    with pytest.raises(InvalidProblemError, match="same shape"):
        buckets.profile_shapes(model, [(idx, tgt), (idx, tgt)])
    with pytest.raises(InvalidProblemError, match="twice the largest"):
        buckets.solve_buckets(_shapes(model, at), "1GiB", "dp", edges=[512])
