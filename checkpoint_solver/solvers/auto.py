"""``auto``: run the solvers that suit the problem and keep the fastest schedule that fits."""

from __future__ import annotations

from checkpoint_solver.errors import CheckpointSolverError, InfeasibleBudgetError
from checkpoint_solver.problem import Problem
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.solvers._registry import REGISTRY

__all__ = ["min_budget_auto", "solve_auto"]


# Options auto passes to solvers that could otherwise run for a long time.
_AUTO_OPTIONS: dict[str, dict[str, object]] = {
    "ilp": {"time_limit": 60.0},
    "ilp-rounding": {"time_limit": 60.0},
}


# Solvers auto leaves to the user: cpsat restricts recomputation and needs a child process and
# a search of up to a minute per budget (its minimum budget is a bisection of such searches).
_NOT_IN_AUTO = {"auto", "cpsat"}


def _candidates(problem: Problem) -> list[str]:
    names = []
    for name, spec in sorted(REGISTRY.items()):
        if name in _NOT_IN_AUTO or problem.kind not in spec.kinds:
            continue
        if spec.requires(problem) is not None:
            continue
        names.append(name)
    return names


def solve_auto(problem: Problem, budget_bytes: int, /) -> Schedule:
    """Try every applicable registered solver and return the least compute time that fits.

    The returned schedule keeps the picked solver's name; its ``notes`` say that ``auto`` picked it
    and list every candidate's predicted time, or why it was infeasible.
    """
    best: Schedule | None = None
    report = []
    lowest: int | None = None
    for name in _candidates(problem):
        spec = REGISTRY[name]
        try:
            sched = spec.fn(problem, budget_bytes, **_AUTO_OPTIONS.get(name, {}))
        except InfeasibleBudgetError as exc:
            if exc.min_budget_bytes is not None:
                lowest = (
                    exc.min_budget_bytes if lowest is None else min(lowest, exc.min_budget_bytes)
                )
            report.append(f"{name}: infeasible")
            continue
        except CheckpointSolverError as exc:
            report.append(f"{name}: {exc}")
            continue
        report.append(f"{name}: {sched.predicted.compute_time:.6g}")
        key = (sched.predicted.compute_time, sched.predicted.peak_bytes)
        if best is None or key < (best.predicted.compute_time, best.predicted.peak_bytes):
            best = sched
    if best is None:
        raise InfeasibleBudgetError(budget_bytes, lowest, "auto")
    note = f"auto picked {best.solver} (least predicted compute time); candidates: " + "; ".join(
        report
    )
    return best.replace(notes=(best.notes + "; " if best.notes else "") + note)


def min_budget_auto(problem: Problem, /) -> int:
    """The smallest minimum budget over the applicable solvers."""
    return min(REGISTRY[name].min_budget(problem) for name in _candidates(problem))
