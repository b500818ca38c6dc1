"""Helpers shared by solvers: building the `Schedule` record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from checkpoint_solver.problem import Problem, fingerprint
from checkpoint_solver.schedule import HostLink, Op, Prediction, Schedule, Status

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
    link: HostLink | None = None,
) -> Schedule:
    """Wrap a solver's ops and its *own* prediction of peak and time into a `Schedule`.

    On a chain whose boundaries' values are known, the solvers' own accounting adds up
    boundaries and over-counts (see `checkpoint_solver.solvers._values`): the peak is then the
    simulator's; so is a whole-step peak (``scope="step"``). With a `link` (an offload schedule)
    the waits for copies and the host peak are the simulator's too."""
    stall, host = 0.0, None
    if scope == "step" or (problem.kind == "chain" and problem.values) or link is not None:
        from checkpoint_solver.simulation import simulate_ops

        report = simulate_ops(problem, list(ops), scope=scope, link=link)
        peak_bytes = report.peak_bytes
        stall, host = report.stall_time, report.host_peak_bytes
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
            stall_time=float(stall),
            host_peak_bytes=host,
        ),
        notes=notes,
        scope=scope,  # type: ignore[arg-type]
        link=link,
    )
