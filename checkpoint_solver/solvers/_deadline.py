"""One clock for a whole solve: ``time_limit`` is the solve's, not each step's."""

from __future__ import annotations

import time

__all__ = ["MAX_TIME_LIMIT", "Deadline", "OutOfTime"]

#: The largest time limit taken (about 11.6 days): backends keep limits in fixed-size numbers,
#: and a longer one means "no limit" in practice (give None for that).
MAX_TIME_LIMIT = 1e6


class OutOfTime(Exception):
    """Raised inside a solver when its deadline has passed (caught by the solver itself)."""


class Deadline:
    """The end of a solve `seconds` from now (None: no end)."""

    def __init__(self, seconds: float | None) -> None:
        self.began = time.perf_counter()
        self.end = None if seconds is None else self.began + float(seconds)

    def left(self, floor: float = 0.01) -> float | None:
        """Seconds left (at least `floor`), or None without a limit."""
        if self.end is None:
            return None
        return max(self.end - time.perf_counter(), floor)

    def expired(self) -> bool:
        return self.end is not None and time.perf_counter() >= self.end

    def check(self) -> None:
        """Raise `OutOfTime` when the deadline has passed."""
        if self.expired():
            raise OutOfTime


def check_time_limit(value: object, *, allow_none: bool = True) -> None:
    """A time limit is seconds in ``[0, MAX_TIME_LIMIT]`` (or None where allowed)."""
    from checkpoint_solver.errors import InvalidOptionError

    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != value  # NaN
        or not 0 <= value <= MAX_TIME_LIMIT
    ):
        none = " (or None for no limit)" if allow_none else ""
        raise InvalidOptionError(
            f"time_limit={value!r} must be seconds in [0, {MAX_TIME_LIMIT:g}]{none}; it is the "
            f"whole solve's"
        )
