"""The greedy heuristics that make graph plans (`checkpoint_solver.solvers._plans`): stage
eviction, and the DTR simulation's plans (`checkpoint_solver.solvers._dtr`), each within a budget
per stage. `greedy` returns them; the MILP and its rounding start from them."""

from __future__ import annotations

from collections.abc import Sequence

from checkpoint_solver.solvers._plans import (
    BoolMatrix,
    OpGraph,
    fix_no_recompute,
    keep_all_plan,
    optimal_r,
    optimal_r_stage,
    plan_time,
    prune_plan,
    stage_peak,
)

__all__ = ["greedy_plan", "plan_fits", "stage_limits"]


def stage_limits(budget_bytes: int, n: int, less: Sequence[int] | None = None) -> list[int]:
    """Each stage's budget: `budget_bytes`, less what else stage t holds (``less[t]``: a whole
    step's model states at that stage, `checkpoint_solver.solvers._step.step_terms`)."""
    return [budget_bytes - (0 if less is None else int(less[t])) for t in range(n)]


def plan_fits(g: OpGraph, R: BoolMatrix, S: BoolMatrix, limits: Sequence[int]) -> bool:
    """Every stage within its budget (`stage_limits`)."""
    return g.base_bytes <= min(limits, default=g.base_bytes) and all(
        stage_peak(g, R, S, t) <= limits[t] for t in range(g.n)
    )


def greedy_plan(
    g: OpGraph,
    budget_bytes: int,
    dtr: list[tuple[list[tuple[str, int]], int]] | None = None,
    less: Sequence[int] | None = None,
) -> tuple[BoolMatrix, BoolMatrix] | None:
    """The better (less compute) of the stage eviction heuristic and the DTR simulation's plan
    that fits `budget_bytes`, or None. `dtr`: the DTR runs at this budget when the caller has
    them already. `less`: per stage, bytes the budget must also hold there (`stage_limits`)."""
    from checkpoint_solver.solvers._dtr import dtr_candidates, events_to_plan

    limits = stage_limits(budget_bytes, g.n, less)
    plans = []
    stagewise = _stage_greedy(g, limits)
    if stagewise is not None:
        plans.append(stagewise)
    for events, _ in dtr_candidates(g, budget_bytes, less) if dtr is None else dtr:
        R, S = events_to_plan(g, events)
        R, S = prune_plan(g, optimal_r(g, S), S)
        if plan_fits(g, R, S, limits):
            plans.append((R, S))
    if not plans:
        return None
    return min(plans, key=lambda p: plan_time(g, p[0]))


def _stage_greedy(g: OpGraph, limits: Sequence[int]) -> tuple[BoolMatrix, BoolMatrix] | None:
    """A fast heuristic: start from keeping everything, then, stage by stage, stop carrying the
    values with the least compute per byte until the stage fits its budget (``limits[t]``; they
    are recomputed where next needed). Returns None when it cannot fit."""
    n = g.n
    R, S = keep_all_plan(g)
    R, S = fix_no_recompute(g, R, S)
    for t in range(n):
        tried: set[int] = set()
        while (current := stage_peak(g, R, S, t)) > limits[t]:
            carried = [i for i in range(t) if S[t, i] and i not in tried and not g.no_recompute[i]]
            if not carried:
                return None
            # Least recompute cost per byte freed; ties: the larger value.
            i = min(carried, key=lambda v: (g.cost[v] / max(int(g.size[v]), 1), -int(g.size[v]), v))
            tried.add(i)
            nxt = min((u for u in g.users[i] if u >= t), default=n)
            if nxt == t:
                continue  # stage t reads it: not carrying it only moves its memory into the stage
            trial_s = S.copy()
            trial_s[t:nxt, i] = False
            trial_r = R.copy()
            touched = range(max(t - 1, 0), min(nxt + 1, n))
            for tt in touched:
                trial_r[tt] = optimal_r_stage(g, trial_s, tt)
            # Keep the eviction only if it lowers stage t and leaves no other stage it touches
            # over the budget (recomputing where next needed may pull in evicted ancestors).
            if stage_peak(g, trial_r, trial_s, t) >= current:
                continue
            if any(
                stage_peak(g, trial_r, trial_s, tt) > max(limits[tt], stage_peak(g, R, S, tt))
                for tt in touched
                if tt != t
            ):
                continue
            R, S = trial_r, trial_s
    R, S = prune_plan(g, R, S)
    if not plan_fits(g, R, S, limits):
        return None
    return R, S
