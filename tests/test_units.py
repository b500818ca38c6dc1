"""Budget parsing and formatting."""

from __future__ import annotations

import math

import pytest

from checkpoint_solver import InvalidBudgetError, format_bytes, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (1, 1),
        (4096, 4096),
        (1e9, 1_000_000_000),
        (2.9, 2),
        ("123", 123),
        ("6GiB", 6 * 2**30),
        ("6 gib", 6 * 2**30),
        ("1.5GB", 1_500_000_000),
        ("512MiB", 512 * 2**20),
        ("2k", 2048),
        ("1e3", 1000),
        ("  7 B ", 7),
        ("1TiB", 2**40),
    ],
)
def test_parse_bytes_accepts(text: object, expected: int) -> None:
    """Numbers and unit strings parse to the exact byte count."""
    assert parse_bytes(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        0,
        -1,
        -5.0,
        0.5,
        math.nan,
        math.inf,
        "",
        "abc",
        "12 parsecs",
        "-3GiB",
        "GiB",
        True,
        None,
        [1],
    ],
)
def test_parse_bytes_rejects(bad: object) -> None:
    """Zero, negative, NaN, infinite, non-numeric and unparseable budgets raise InvalidBudgetError."""
    with pytest.raises(InvalidBudgetError, match="give a positive number of bytes"):
        parse_bytes(bad)  # type: ignore[arg-type]


def test_invalid_budget_is_a_value_error() -> None:
    """The budget error is also a ValueError for callers that catch builtins."""
    with pytest.raises(ValueError):
        parse_bytes("nope")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (5 * 2**30, "5.00 GiB"),
        (-2048, "-2.00 KiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    """Byte counts print with binary units."""
    assert format_bytes(n) == text
