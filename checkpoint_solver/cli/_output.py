"""The one printer of the CLI: text tables, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["emit_json", "error_line", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned plain-text table with a rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells[1:]
    ]
    return "\n".join(lines)


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout (sorted keys, so output is stable)."""
    click.echo(json.dumps(data, sort_keys=True, indent=2, allow_nan=False))


def error_line(exc: BaseException) -> str:
    """One line: the error type and its message (which carries the hint)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"error ({type(exc).__name__}): {text}"


def fail(exc: BaseException, verbose: bool) -> None:
    """Print `exc` as one line (with the traceback when `verbose`) and exit with status 1."""
    if verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    click.echo(error_line(exc), err=True)
    if not verbose:
        click.echo("(run with -v for the traceback)", err=True)
    sys.exit(1)
