"""Deprecated alias of `checkpoint_solver.curves` (renamed: it holds trade-off curves, CSV and
plots, not a `SimulationReport`). Importing it warns; it will be removed in a later release."""

from __future__ import annotations

import warnings

from checkpoint_solver.curves import CurveRow, plot_memory, plot_tradeoff, tradeoff_rows, write_csv

__all__ = ["CurveRow", "plot_memory", "plot_tradeoff", "tradeoff_rows", "write_csv"]

warnings.warn(
    "checkpoint_solver.report is now checkpoint_solver.curves; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
