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


def test_examples_must_vary_in_one_or_two_dimensions_on_a_grid() -> None:
    model, at = _model()
    idx, tgt = at(32)
    with pytest.raises(InvalidProblemError, match="every combination"):
        buckets.profile_shapes(model, [(idx, tgt), (idx[:2, :16], tgt[:2, :16])])
    with pytest.raises(InvalidProblemError, match="same shape"):
        buckets.profile_shapes(model, [(idx, tgt), (idx, tgt)])
    with pytest.raises(InvalidProblemError, match="more than 2 dimensions"):
        buckets._varying([torch.zeros(2, 3, 4), torch.zeros(3, 4, 5)])
    with pytest.raises(InvalidProblemError, match="twice the largest"):
        buckets.solve_buckets(_shapes(model, at), "1GiB", "dp", edges=[512])


def test_batch_and_length_buckets_keep_each_promise() -> None:
    """Two varying dimensions: profiled at 2 batch sizes x 3 lengths, the fit at an unprofiled
    shape is that shape's profile, and training at shapes from several buckets in turn keeps
    each bucket's promise, with plain autograd's gradients."""
    model, at = _model()

    def shape(b: int, t: int):  # type: ignore[no-untyped-def]
        idx, tgt = at(t)
        return (idx[:b].contiguous(), tgt[:b].contiguous())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid = [shape(b, t) for b in (2, 4) for t in (32, 64, 128)]
        shapes = buckets.profile_shapes(model, grid, warmup=1, repeats=1)
        real = cs.profile(model, shape(3, 96), warmup=1, repeats=1, graph=False).chain
    assert shapes.sizes == ((2, 32), (2, 64), (2, 128), (4, 32), (4, 64), (4, 128))
    assert shapes.groups == (((0, 0), (1, 0)), ((0, 1), (1, 1)))
    fitted = shapes.fit.at((3, 96))
    assert (fitted.x, fitted.xbar, fitted.delta) == (real.x, real.xbar, real.delta)

    budget = 2 * cs.min_budget(shapes.fit.at((4, 128)), "dp")
    bk = buckets.solve_buckets(shapes, budget, "dp", edges=[[2, 4], [64, 128]])
    assert bk.cells == ((2, 64), (2, 128), (4, 64), (4, 128)) and "4 x 128" in bk.table()
    applied = buckets.apply_buckets(copy.deepcopy(model), bk)
    for b, t, bucket in ((4, 128, 3), (2, 32, 0), (3, 64, 2), (2, 100, 1), (4, 128, 3)):
        torch.manual_seed(1)
        measure_step(applied, shape(b, t))
        torch.manual_seed(1)
        got = measure_step(applied, shape(b, t)).peak_bytes
        assert bucket_in_use(applied) == bucket, (b, t)
        predicted = bk.schedules[bucket].predicted.peak_bytes
        assert got <= predicted * 1.03, (b, t, got, predicted)
        if (b, t) == bk.cells[bucket]:
            assert got >= predicted * 0.97, (b, t, got, predicted)
        ref = copy.deepcopy(model)
        for p in (*ref.parameters(), *applied.parameters()):
            p.grad = None
        torch.manual_seed(2)
        want = train_step(ref, shape(b, t))
        torch.manual_seed(2)
        assert torch.equal(train_step(applied, shape(b, t)), want)
        for x, y in zip(ref.parameters(), applied.parameters(), strict=True):
            assert torch.equal(x.grad, y.grad)
    with pytest.raises(ApplyError, match="in dimension 0"):
        bk.bucket_of((8, 64))
    with pytest.raises(InvalidProblemError, match="one list of sizes per dimension"):
        buckets.solve_buckets(shapes, budget, "dp", edges=[64, 128])
    cs.runtime.remove(applied)
