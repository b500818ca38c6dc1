"""Helpers shared by solvers: building the `Schedule` record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from checkpoint_solver.problem import Problem, fingerprint
from checkpoint_solver.schedule import Op, Prediction, Schedule, Status

__all__ = ["make_schedule"]


def make_schedule(
    problem: Problem,
    budget_bytes: int,
    ops: Sequence[Op],
    *,
    solver: str,
    peak_bytes: int,
    compute_time: float,
    options: Mapping[str, Any] | None = None,
    status: Status = Status.HEURISTIC,
    gap: float | None = None,
    lower_bound: float | None = None,
    notes: str = "",
    scope: str = "activations",
) -> Schedule:
    """Wrap a solver's ops and its *own* prediction of peak and time into a `Schedule`.

    On a chain whose boundaries' values are known, the solvers' own accounting adds up
    boundaries and over-counts (see `checkpoint_solver.solvers._values`): the peak is then the
    simulator's; so is a whole-step peak (``scope="step"``)."""
    if scope == "step" or (problem.kind == "chain" and problem.values):
        from checkpoint_solver.simulation import simulate_ops

        peak_bytes = simulate_ops(problem, list(ops), scope=scope).peak_bytes
    base = problem.store_all_time
    return Schedule(
        kind=problem.kind,
        fingerprint=fingerprint(problem),
        size=problem.length if problem.kind == "chain" else problem.size,
        budget_bytes=budget_bytes,
        ops=tuple(ops),
        solver=solver,
        options=dict(options or {}),
        status=status,
        gap=gap,
        lower_bound=lower_bound,
        predicted=Prediction(
            peak_bytes=int(peak_bytes),
            compute_time=float(compute_time),
            overhead=float(compute_time / base - 1) if base > 0 else 0.0,
        ),
        notes=notes,
        scope=scope,  # type: ignore[arg-type]
    )
