"""Bytes and seconds at the edge: the only place where human strings become numbers.

Memory is an ``int`` number of bytes everywhere inside the library. `parse_bytes` turns what a user
typed (``"6GiB"``, ``"512 MB"``, ``1_000_000``) into that integer; `format_bytes` and `format_seconds`
turn numbers back into short human text for tables and messages.

Examples
--------
>>> parse_bytes("6GiB")
6442450944
>>> parse_bytes("1.5 kB")
1500
>>> format_bytes(6442450944)
'6.00 GiB'
"""

from __future__ import annotations

import math
import numbers
import re

from checkpoint_solver.errors import InvalidBudgetError

__all__ = ["MAX_BYTES", "format_bytes", "format_seconds", "parse_bytes"]

#: The largest budget, and the largest sum of a problem's sizes, the solvers take: 2**60 bytes
#: (1 EiB). Their tables and models are machine integers (int64); sums of sizes and budgets stay
#: far from 2**63 below it, and no device holds more.
MAX_BYTES = 2**60

_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
}
_PATTERN = re.compile(r"^\s*([+-]?)\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_HINT = 'give a positive number of bytes, or a string such as "6GiB", "512MiB", "1.5GB" or "1e9"'


def parse_bytes(value: int | float | str) -> int:
    """Return `value` as a positive integer number of bytes.

    Parameters
    ----------
    value : int | float | str
        Bytes as a number, or a string with an optional unit: B, kB/MB/GB/TB (powers of 1000),
        KiB/MiB/GiB/TiB or K/M/G/T (powers of 1024). Case does not matter. Fractions of a byte
        are rounded down.

    Returns
    -------
    int
        The number of bytes, at least 1.

    Raises
    ------
    InvalidBudgetError
        For a bool, NaN, infinity, zero, a negative number, or a string that does not parse.

    Examples
    --------
    >>> parse_bytes(1024)
    1024
    >>> parse_bytes("2 MiB")
    2097152
    >>> parse_bytes("0.5G")
    536870912
    """
    if isinstance(value, (bool, _np_bool())):
        raise InvalidBudgetError(f"budget {value!r} is a bool, not a number of bytes; {_HINT}")
    if isinstance(value, numbers.Integral):  # int, numpy integers
        number: float | int = int(value)
    elif isinstance(value, numbers.Real):  # float, numpy floats
        number = float(value)
        if not math.isfinite(number):
            raise InvalidBudgetError(f"budget {value!r} is not finite; {_HINT}")
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if match is None or match.group(3).lower() not in _UNITS:
            raise InvalidBudgetError(f"cannot parse budget {value!r}; {_HINT}")
        mantissa = float(match.group(2))
        if not math.isfinite(mantissa):
            raise InvalidBudgetError(f"budget {value!r} is not finite; {_HINT}")
        number = mantissa * _UNITS[match.group(3).lower()]
        if match.group(1) == "-" and number > 0:
            raise InvalidBudgetError(f"budget {value!r} is negative; {_HINT}")
    else:
        raise InvalidBudgetError(f"budget of type {type(value).__name__} is not supported; {_HINT}")
    if number > MAX_BYTES:
        raise InvalidBudgetError(
            f"budget {value!r} is more than {MAX_BYTES} bytes (1 EiB), the most the solvers "
            f"represent; any budget at or above the store-all peak (cs.min_budget(problem, "
            f"'store_all')) gives the store-all schedule"
        )
    result = math.floor(number)
    if result <= 0:
        raise InvalidBudgetError(
            f"budget {value!r} is {'negative' if number < 0 else 'not positive'}; {_HINT}"
        )
    return result


def _np_bool() -> type:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return bool
    return np.bool_


def format_bytes(n: int | float) -> str:
    """Return a short human form of a byte count using binary units.

    Examples
    --------
    >>> format_bytes(512)
    '512 B'
    >>> format_bytes(3 * 2**20)
    '3.00 MiB'
    """
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1024:
        return f"{sign}{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:.2f} {unit}"
    raise AssertionError("unreachable")


def format_seconds(s: float) -> str:
    """Return a short human form of a duration in seconds.

    Examples
    --------
    >>> format_seconds(0.0123)
    '12.3 ms'
    >>> format_seconds(75)
    '75.0 s'
    """
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.1f} s"
