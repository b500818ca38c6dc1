"""The one printer of the CLI: text tables, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from checkpoint_solver._text import table

__all__ = ["EXIT_ERROR", "emit_json", "error_line", "error_object", "fail", "table"]


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout (sorted keys, so output is stable)."""
    click.echo(json.dumps(data, sort_keys=True, indent=2, allow_nan=False))


def error_line(exc: BaseException) -> str:
    """One line: the error type and its message (which carries the hint)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"error ({type(exc).__name__}): {text}"


def error_object(exc: BaseException) -> dict[str, Any]:
    """The JSON form of an error: its type, its message, and the hint (what would work: the
    message after its first "; ", or the error's own ``hint``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    hint = getattr(exc, "hint", "") or ""
    message = text
    if not hint and "; " in text:
        message, hint = text.split("; ", 1)
    out: dict[str, Any] = {"type": type(exc).__name__, "message": message, "hint": hint}
    low = getattr(exc, "min_budget_bytes", None)
    if low is not None:
        out["min_budget_bytes"] = low
    return {"error": out}


#: Exit statuses of every command: 0 success, 1 an error (bad input, a usage error, an
#: infeasible budget, an invalid schedule), 130 interrupted.
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130


def fail(exc: BaseException, verbose: bool, as_json: bool = False) -> None:
    """Report `exc` (one line on stderr, or with `as_json` a JSON object on stdout; the traceback
    too when `verbose`) and exit with status 1."""
    if verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if as_json:
        click.echo(json.dumps(error_object(exc), sort_keys=True, indent=2))
    else:
        click.echo(error_line(exc), err=True)
        if not verbose:
            click.echo("(run with -v for the traceback)", err=True)
    sys.exit(EXIT_ERROR)
