"""Chain construction and validation."""

from __future__ import annotations

import math

import pytest

from checkpoint_solver import Chain, InvalidProblemError
from checkpoint_solver.problem.synthetic import random_chain, transformer_chain, uniform_chain


def _chain(**overrides: object) -> Chain:
    fields: dict[str, object] = dict(
        uf=(1.0, 2.0), ub=(2.0, 4.0), x=(8, 8, 4), xbar=(16, 4), of=(0, 1), ob=(2, 0)
    )
    fields.update(overrides)
    return Chain(**fields)  # type: ignore[arg-type]


def test_fields_become_tuples_of_the_right_type() -> None:
    """Lists are stored as tuples, times as floats and sizes as ints."""
    c = Chain(uf=[1, 2], ub=[2, 4], x=[8, 8, 4], xbar=[16.0, 4], of=[0, 1], ob=[2, 0])
    assert c.uf == (1.0, 2.0) and all(type(v) is float for v in c.uf)
    assert c.xbar == (16, 4) and all(type(v) is int for v in c.xbar)
    assert c.length == 2
    assert c.store_all_time == 9.0


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"x": (8, 8)}, r"Chain.x has 2 entries .* needs 3"),
        ({"ub": (1.0,)}, r"Chain.ub has 1 entries"),
        ({"xbar": (16, -4)}, r"xbar of stage 2 is -4"),
        ({"x": (8, -1, 4)}, r"x of a\[1\] is -1"),
        ({"of": (0, 1.5)}, r"must be integers"),
        ({"uf": (1.0, math.nan)}, r"finite and >= 0"),
        ({"ub": (-1.0, 2.0)}, r"finite and >= 0"),
        ({"uf": ("fast", 1.0)}, r"times must be numbers"),
        ({"xbar": (4, 4)}, r"xbar of stage 1 is 4 bytes, less than its output a\[1\]"),
        ({"cost_unit": "hours"}, r"cost_unit"),
        ({"x": 5}, r"must be a sequence"),
    ],
)
def test_inconsistent_chains_are_rejected(overrides: dict[str, object], match: str) -> None:
    """Mismatched lengths, negative or fractional sizes, bad times and a tape smaller than its output raise."""
    with pytest.raises(InvalidProblemError, match=match):
        _chain(**overrides)


def test_empty_chain_is_allowed() -> None:
    """A chain of zero stages holds only its input."""
    c = Chain(uf=(), ub=(), x=(3,), xbar=(), of=(), ob=())
    assert c.length == 0 and c.store_all_time == 0.0


def test_uniformity() -> None:
    """Uniform chains are recognised; a different input size does not break uniformity."""
    assert uniform_chain(5).is_uniform
    assert _chain(
        uf=(1.0, 1.0), ub=(1.0, 1.0), x=(99, 4, 4), xbar=(4, 4), of=(0, 0), ob=(0, 0)
    ).is_uniform
    assert not _chain().is_uniform


def test_generators_are_deterministic() -> None:
    """Synthetic generators give the same chain for the same arguments."""
    assert random_chain(9, seed=3) == random_chain(9, seed=3)
    assert random_chain(9, seed=3) != random_chain(9, seed=4)
    t = transformer_chain(2)
    assert t.length == 2 * 2 + 2
    assert t.xbar[1] > t.xbar[2]  # attention tape (with scores) exceeds the MLP tape at seq 1024
