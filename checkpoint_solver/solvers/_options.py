"""The one check of the solvers' integer options (slot counts, budgets, threads, points)."""

from __future__ import annotations

from typing import Any

from checkpoint_solver.errors import InvalidOptionError

__all__ = ["int_option"]


def int_option(
    name: str,
    value: Any,
    *,
    low: int = 1,
    high: int | None = None,
    allow_none: bool = False,
    hint: str = "",
) -> None:
    """Raise `InvalidOptionError` unless `value` is an integer in ``low..high`` (``True`` and
    ``False`` are not integers here), or None when `allow_none`. The message names the option,
    the value, the range and `hint` (what the option means, its default)."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        want = f"in {low}..{high}" if high is not None else f">= {low}"
        raise InvalidOptionError(
            f"{name}={value!r} must be an integer {want}"
            + (" or None" if allow_none else "")
            + (f" {hint}" if hint else "")
        )
