"""`ChainFit`: chains at any input size from two or three profiled sizes (torch-free)."""

from __future__ import annotations

import dataclasses

import pytest

from checkpoint_solver.errors import InvalidProblemError
from checkpoint_solver.problem import BoundaryValue, Chain
from checkpoint_solver.problem.buckets import ChainFit


def _chain(n: int) -> Chain:
    """Sizes a + b n + c n^2 by construction: boundaries linear, tapes with a quadratic part."""
    return Chain(
        uf=(0.001 * n, 0.002 * n),
        ub=(0.002 * n, 0.004 * n),
        x=(4 * n, 8 * n, 4 * n),
        xbar=(16 * n + n * n, 8 * n + 2 * n * n),
        of=(n, 0),
        ob=(-n, 2 * n),
        values=(BoundaryValue(2 * n, 1, (2,), (2,)),),
    )


def _same(got: Chain, want: Chain) -> None:
    """Sizes equal to the byte, times to rounding."""
    assert (got.x, got.xbar, got.of, got.ob, got.values) == (
        want.x,
        want.xbar,
        want.of,
        want.ob,
        want.values,
    ), got.name
    assert got.uf == pytest.approx(want.uf) and got.ub == pytest.approx(want.ub)


def test_a_quadratic_fit_through_three_sizes_is_exact_between_and_beyond() -> None:
    fit = ChainFit.of([_chain(64), _chain(16), _chain(32)], [64, 16, 32])
    assert fit.sizes == (16, 32, 64)
    for n in (16, 24, 48, 100):
        _same(fit.at(n), _chain(n))
    assert fit.at(32) is fit.chains[1]  # a profiled size is the profile itself


def test_two_sizes_fit_a_line() -> None:
    a = dataclasses.replace(_chain(10), xbar=(200, 300))
    b = dataclasses.replace(_chain(20), xbar=(400, 500))
    assert ChainFit.of([a, b], [10, 20]).at(15).xbar == (300, 400)


def test_chains_that_differ_in_structure_or_shrink_are_refused() -> None:
    other = dataclasses.replace(_chain(32), values=())
    with pytest.raises(InvalidProblemError, match="differs in structure"):
        ChainFit.of([_chain(16), other], [16, 32])
    shrinking = dataclasses.replace(_chain(32), x=(1, 1, 1), values=())
    with pytest.raises(InvalidProblemError, match="shrinks"):
        ChainFit.of([dataclasses.replace(_chain(16), values=()), shrinking], [16, 32])
    with pytest.raises(InvalidProblemError, match="two or more"):
        ChainFit.of([_chain(16)], [16])
    with pytest.raises(InvalidProblemError, match="integer >= 1"):
        ChainFit.of([_chain(16), _chain(32)], [16, 32]).at(0)


def _chain2(b: int, s: int) -> Chain:
    """Sizes in the batch b and the length s: activations b s, scores b s^2, a table made once
    per length (s, no batch) and a constant."""
    return Chain(
        uf=(0.001 * b * s, 0.002 * b * s),
        ub=(0.002 * b * s, 0.004 * b * s),
        x=(4 * b * s, 8 * b * s + 3 * s, 4 * b * s),
        xbar=(16 * b * s + b * s * s + 3 * s, 8 * b * s + 2 * b * s * s + 64),
        of=(b * s, 0),
        ob=(-b * s, 2 * b * s),
        values=(BoundaryValue(3 * s, 1, (2,), (2,)),),
    )


def test_batch_and_length_profiled_on_a_grid_fit_exactly_at_every_shape() -> None:
    grid = [(b, s) for b in (2, 4) for s in (16, 32, 64)]
    fit = ChainFit.of([_chain2(*p) for p in reversed(grid)], list(reversed(grid)))
    assert fit.sizes == tuple(grid) and fit.dims == 2
    for p in ((3, 48), (2, 40), (8, 128), (1, 8)):
        _same(fit.at(p), _chain2(*p))
    assert fit.at((4, 32)) is fit.chains[4]
    with pytest.raises(InvalidProblemError, match="2 integers"):
        fit.at(32)


def test_a_grid_with_too_few_shapes_or_a_shrinking_size_is_refused() -> None:
    # Both dimensions vary but only along the diagonal: B S and S^2 cannot be told apart.
    diagonal = [(2, 16), (4, 32), (8, 64)]
    with pytest.raises(InvalidProblemError, match="every combination"):
        ChainFit.of([_chain2(*p) for p in diagonal], diagonal)
    grid = [(b, s) for b in (2, 4) for s in (16, 32)]
    chains = [_chain2(*p) for p in grid]
    chains[3] = dataclasses.replace(chains[3], x=(1, 1, 1), values=())  # (4, 32) below (2, 32)
    chains = [dataclasses.replace(c, values=()) for c in chains]
    with pytest.raises(InvalidProblemError, match=r"shrinks as the input grows from \(2, 16\)"):
        ChainFit.of(chains, grid)
