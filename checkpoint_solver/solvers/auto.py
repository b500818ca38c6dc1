"""``auto``: run the solvers that suit the problem and keep the fastest schedule that fits."""

from __future__ import annotations

from dataclasses import dataclass

from checkpoint_solver.errors import CheckpointSolverError, InfeasibleBudgetError
from checkpoint_solver.problem import Problem
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.solvers._deadline import Deadline, check_time_limit
from checkpoint_solver.solvers._options import SolverOptions, scope_option
from checkpoint_solver.solvers._registry import REGISTRY
from checkpoint_solver.solvers._step import graph_step_min_budget, graph_step_solve
from checkpoint_solver.solvers._values import has_values, min_budget_exact, solve_exact

__all__ = ["min_budget_auto", "solve_auto"]


# Solvers auto leaves to the user: cpsat restricts recomputation and needs a child process and
# a search of up to a minute per budget (its minimum budget is a bisection of such searches).
# dp-offload and ilp-offload need a HostLink: they are asked for by name.
_NOT_IN_AUTO = {"auto", "cpsat", "dp-offload", "ilp-offload"}

# Graph sizes (op nodes) up to which the exact MILP, then the LP rounding, are worth running.
ILP_MAX_OPS = 200
ROUNDING_MAX_OPS = 2000


def _candidates(problem: Problem, time_limit: float) -> list[tuple[str, dict[str, object], str]]:
    """(solver, options, why) for each solver auto runs on `problem` within `time_limit`."""
    out: list[tuple[str, dict[str, object], str]] = []
    if problem.kind == "chain":
        for name, spec in sorted(REGISTRY.items()):
            if name in _NOT_IN_AUTO or "chain" not in spec.kinds:
                continue
            if spec.requires(problem) is None:
                out.append((name, {}, "chain solvers are fast"))
        return out
    n_ops = len(problem.ops)
    out.append(("store_all", {}, "the memory reference"))
    out.append(("greedy", {}, "the fast heuristic, always"))
    if REGISTRY["hierarchical"].requires(problem) is None:
        why = "the graph has blocks" if problem.block else "segments cut from the graph"
        out.append(("hierarchical", {}, why))
    if time_limit >= 1.0 and n_ops <= ILP_MAX_OPS:
        out.append(
            (
                "ilp",
                {"time_limit": time_limit, "order": "search"},
                f"{n_ops} ops <= {ILP_MAX_OPS}: the MILP (in a searched low-peak order when one "
                f"is found)",
            )
        )
    elif time_limit >= 1.0 and n_ops <= ROUNDING_MAX_OPS:
        out.append(
            (
                "ilp-rounding",
                {"time_limit": time_limit, "order": "search"},
                f"{n_ops} ops > {ILP_MAX_OPS}: LP rounding instead of the MILP",
            )
        )
    return out


@dataclass(frozen=True)
class AutoOptions(SolverOptions):
    """``auto``'s options (see `solve_auto`)."""

    time_limit: float = 60.0
    scope: str = "activations"

    def check(self) -> None:
        check_time_limit(self.time_limit, allow_none=False)
        scope_option(self.scope)


def solve_auto(
    problem: Problem, budget_bytes: int, /, *, time_limit: float = 60.0, scope: str = "activations"
) -> Schedule:
    """Run the solvers that suit the problem's kind and size within `time_limit` seconds for the
    whole solve, and return the least compute time that fits.

    The heuristics run first; the exact solver (``ilp`` or ``ilp-rounding``) gets the time they
    leave, and a candidate is skipped once the limit has passed.

    Chains: every chain solver (all are fast). Graphs: ``greedy`` always, ``hierarchical`` on
    training graphs (on their blocks, or segments cut from them), the ``ilp`` (``order="search"``) up to 200 op nodes, ``ilp-rounding`` up to
    2,000; with a time
    limit under a second only the heuristics. The returned schedule keeps the picked solver's
    name; its ``notes`` say that ``auto`` picked it, why each candidate ran, and each candidate's
    predicted time or why it failed. With ``scope="step"`` (a graph with model states, set by
    `checkpoint_solver.solve`) each candidate solves the whole step
    (`checkpoint_solver.solvers._step`).
    """
    AutoOptions(time_limit=time_limit, scope=scope)
    deadline = Deadline(time_limit)
    best: Schedule | None = None
    report = []
    lowest: int | None = None
    candidates = _candidates(problem, float(time_limit))
    for name, options, why in candidates:
        spec = REGISTRY[name]
        if "time_limit" in options:
            if deadline.expired() and best is not None:
                report.append(f"{name} ({why}): skipped, the time limit had passed")
                continue
            options = {**options, "time_limit": deadline.left(floor=0.5)}
        try:
            if scope == "step" and problem.kind == "graph":
                sched = graph_step_solve(spec, problem, budget_bytes, options)
            elif has_values(problem):
                sched = solve_exact(spec, problem, budget_bytes, options)  # type: ignore[arg-type]
            else:
                sched = spec.fn(problem, budget_bytes, **options)
        except InfeasibleBudgetError as exc:
            if exc.min_budget_bytes is not None:
                lowest = (
                    exc.min_budget_bytes if lowest is None else min(lowest, exc.min_budget_bytes)
                )
            report.append(f"{name} ({why}): infeasible")
            continue
        except CheckpointSolverError as exc:
            report.append(f"{name} ({why}): {exc}")
            continue
        report.append(f"{name} ({why}): {sched.predicted.compute_time:.6g}")
        key = (sched.predicted.compute_time, sched.predicted.peak_bytes)
        if best is None or key < (best.predicted.compute_time, best.predicted.peak_bytes):
            best = sched
    if best is None:
        raise InfeasibleBudgetError(budget_bytes, lowest, "auto")
    note = (
        f"auto picked {best.solver} (least predicted compute time; time limit {time_limit:g} s "
        f"for the whole solve); candidates: " + "; ".join(report)
    )
    return best.replace(notes=(best.notes + "; " if best.notes else "") + note)


def min_budget_auto(
    problem: Problem, /, *, time_limit: float = 60.0, scope: str = "activations"
) -> int:
    """The smallest minimum budget over the solvers auto runs (in `scope`)."""
    AutoOptions(time_limit=time_limit, scope=scope)
    out = []
    for name, options, _ in _candidates(problem, float(time_limit)):
        spec = REGISTRY[name]
        if scope == "step" and problem.kind == "graph":
            out.append(graph_step_min_budget(spec, problem, options))
        elif has_values(problem):
            out.append(min_budget_exact(spec, problem, options))  # type: ignore[arg-type]
        else:
            out.append(spec.min_budget(problem, **options))
    return min(out)
