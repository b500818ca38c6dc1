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


def test_a_quadratic_fit_through_three_sizes_is_exact_between_and_beyond() -> None:
    fit = ChainFit.of([_chain(64), _chain(16), _chain(32)], [64, 16, 32])
    assert fit.sizes == (16, 32, 64)
    for n in (16, 24, 48, 100):
        got, want = fit.at(n), _chain(n)
        assert (got.x, got.xbar, got.of, got.ob, got.values) == (
            want.x,
            want.xbar,
            want.of,
            want.ob,
            want.values,
        )
        assert got.uf == pytest.approx(want.uf) and got.ub == pytest.approx(want.ub)
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
