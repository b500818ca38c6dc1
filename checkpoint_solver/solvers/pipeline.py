"""Per-stage schedules for pipeline parallelism: one device budget, every stage solved for it.

In a pipeline of P stages over M microbatches, a stage holds the activations of several
microbatches at once: each microbatch's forward leaves behind what the stage's schedule keeps
for its backward (its checkpoints and tapes), until that microbatch's backward runs. Under 1F1B,
stage k (0-based) of P has up to ``min(P - k, M)`` microbatches in flight; under GPipe (all
forwards, then all backwards) every stage has M. So the first stages need lower-memory
schedules than the last ones for the same device (NeMo #4813, `../shared/notes/practice.md`).

For a stage with ``m`` microbatches in flight and a schedule `s`, the predicted stage peak is
``(m - 1) * held(s) + peak(s)``: ``held(s)`` is what one microbatch leaves live when its forward
ends (the simulator's memory at that point), and ``peak(s)`` the peak of the microbatch whose
forward or backward runs. `solve_pipeline` solves each stage's problem at a grid of budgets
between its least memory and its store-all peak and keeps, per stage, the fastest schedule whose
stage peak fits the device budget. Status ``heuristic``: the grid is a search, and the
per-microbatch schedule is one for all of a stage's microbatches.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem import Problem
from checkpoint_solver.schedule import Bwd, Compute, Schedule
from checkpoint_solver.simulation import simulate
from checkpoint_solver.units import parse_bytes

__all__ = ["PipelineKind", "PipelinePlan", "StagePlan", "in_flight", "solve_pipeline"]


class PipelineKind(str, enum.Enum):
    """How a pipeline orders its microbatches' forwards and backwards."""

    ONE_F_ONE_B = "1f1b"
    GPIPE = "gpipe"


def in_flight(stage: int, stages: int, microbatches: int, kind: str = "1f1b") -> int:
    """Microbatches stage `stage` (0-based) of `stages` holds at once: ``min(stages - stage,
    microbatches)`` under 1F1B, `microbatches` under GPipe."""
    if PipelineKind(kind) is PipelineKind.GPIPE:
        return microbatches
    return min(stages - stage, microbatches)


@dataclass(frozen=True)
class StagePlan:
    """One stage's schedule and what it holds.

    Attributes
    ----------
    in_flight : int
        Microbatches the stage holds at once.
    held_bytes : int
        What one microbatch leaves live from its forward to its backward.
    peak_bytes : int
        The stage's predicted peak: ``(in_flight - 1) * held_bytes + schedule.predicted.peak_bytes``.
    """

    stage: int
    in_flight: int
    schedule: Schedule
    held_bytes: int
    peak_bytes: int


@dataclass(frozen=True)
class PipelinePlan:
    """Every stage's plan for one device budget."""

    stages: tuple[StagePlan, ...]
    budget_bytes: int
    kind: str
    microbatches: int

    @property
    def peak_bytes(self) -> int:
        """The largest stage peak (each stage is on its own device)."""
        return max(s.peak_bytes for s in self.stages)


def held_bytes(problem: Problem, schedule: Schedule) -> int:
    """Memory live when the schedule's forward ends (before its first backward op)."""
    rep = simulate(problem, schedule)
    for i, op in enumerate(schedule.ops):
        backward = isinstance(op, Bwd) or (
            isinstance(op, Compute) and problem.kind == "graph" and problem.is_backward[op.node]
        )
        if backward:
            return rep.timeline[i - 1] if i else 0
    return rep.timeline[-1] if rep.timeline else 0


def _candidates(problem: Problem, solver: str, points: int) -> list[Schedule]:
    from checkpoint_solver.solvers import min_budget, solve

    low = min_budget(problem, solver)
    high = max(min_budget(problem, "store_all"), low)
    budgets = sorted({low + (high - low) * i // (points - 1) for i in range(points)})
    out = []
    for b in budgets:
        try:
            out.append(solve(problem, b, solver))
        except InfeasibleBudgetError:
            continue
    return out


def solve_pipeline(
    problems: Sequence[Problem],
    budget: int | float | str,
    *,
    microbatches: int,
    kind: str = "1f1b",
    solver: str = "dp",
    points: int = 24,
) -> PipelinePlan:
    """Solve every pipeline stage (`problems[k]`: stage k's chain or graph, profiled on one
    microbatch) for one device `budget`, counting its in-flight microbatches.

    Raises
    ------
    InvalidOptionError
        No stages, fewer than one microbatch, an unknown `kind`, or `points` below 2.
    InfeasibleBudgetError
        A stage fits no schedule of the grid: the error names that stage's least peak.
    """
    if not problems:
        raise InvalidOptionError("solve_pipeline needs at least one stage's problem")
    if isinstance(microbatches, bool) or not isinstance(microbatches, int) or microbatches < 1:
        raise InvalidOptionError(f"microbatches={microbatches!r}; give an integer >= 1")
    try:
        PipelineKind(kind)
    except ValueError:
        kinds = ", ".join(repr(k.value) for k in PipelineKind)
        raise InvalidOptionError(f"kind={kind!r}; give one of {kinds}") from None
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise InvalidOptionError(f"points={points!r}; give an integer >= 2")
    budget_bytes = parse_bytes(budget)
    plans = []
    for k, problem in enumerate(problems):
        m = in_flight(k, len(problems), microbatches, kind)
        best: StagePlan | None = None
        least: int | None = None
        for sched in _candidates(problem, solver, points):
            held = held_bytes(problem, sched)
            peak = (m - 1) * held + sched.predicted.peak_bytes
            least = peak if least is None else min(least, peak)
            if peak <= budget_bytes and (
                best is None or sched.predicted.compute_time < best.schedule.predicted.compute_time
            ):
                best = StagePlan(k, m, sched, held, peak)
        if best is None:
            raise InfeasibleBudgetError(
                budget_bytes,
                least or 0,
                f"{solver} (pipeline stage {k} with {m} microbatches in flight)",
            )
        plans.append(best)
    return PipelinePlan(tuple(plans), budget_bytes, PipelineKind(kind).value, microbatches)
