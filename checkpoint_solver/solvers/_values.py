"""Chain solvers on chains whose boundaries' values are known: solved with every boundary counting
the values that cross it, judged by the simulator, which counts each copy of a value once.

A profiled chain lists the tensors its boundaries are made of (`Chain.values`): a skip, a mask, an
encoder's output or an RNN's collected outputs is part of every boundary it crosses. The chain
solvers' own accounting (the DP's recursion, Revolve's and the periodic plans' closed forms) adds
up boundaries, so it counts such a value once per boundary held and over-counts: a schedule it
finds within a budget fits, but may leave memory unused. Here a chain solver is run at budgets
above the user's (a grid over the range up to the additive store-all peak, then finer grids around
the best point: one DP table per grid) and the fastest schedule whose simulated peak still fits
is kept; below the solver's own minimum, its minimum-memory schedule is kept when its simulated
peak fits.
The result carries the simulator's peak and says so.

No optimality is claimed for it: the solvers are optimal for their own accounting, and a schedule
that holds more boundaries than that accounting allows could be faster still.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Chain, Problem
from checkpoint_solver.schedule import Offload, Schedule, Status
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._registry import SolverSpec
from checkpoint_solver.solvers.baseline_plans import (
    Rule,
    fastest_rule,
    offload_rule_plans,
    rule_plans,
)

__all__ = ["has_values", "min_budget_exact", "solve_exact"]

# Budgets per grid over the solver's budget range, and grids (each around the best of the last).
GRID = 33
ROUNDS = 3


def has_values(problem: Problem) -> bool:
    return problem.kind == "chain" and bool(problem.values)


def _additive_store_all(chain: Chain) -> int:
    from checkpoint_solver.solvers.store_all import min_budget_store_all

    return min_budget_store_all(chain)


def _attempt(
    spec: SolverSpec, chain: Chain, budget: int, options: dict[str, Any]
) -> tuple[Schedule, int] | None:
    try:
        sched = spec.fn(chain, budget, **options)
    except InfeasibleBudgetError:
        return None
    # `make_schedule` already gives chains with values the simulator's peak.
    return sched, sched.predicted.peak_bytes


def _faster(a: tuple[Schedule, int] | None, b: tuple[Schedule, int]) -> tuple[Schedule, int]:
    if a is None:
        return b
    # Offload schedules wait for copies too: compare step times.
    ka = (a[0].predicted.compute_time + a[0].predicted.stall_time, a[1])
    kb = (b[0].predicted.compute_time + b[0].predicted.stall_time, b[1])
    return b if kb < ka else a


def _rules(spec: SolverSpec, chain: Chain, options: dict[str, Any]) -> list[Rule]:
    """Torch's rules' plans, weighed beside `dp`'s (the solver that promises the fastest plan;
    the others are their algorithms: Revolve's plan, the periodic one, store-all), and for
    ``dp-offload`` the offload baselines' over its link too (their simulated peaks count a
    value another kept boundary holds once, where its own recursion counts it per boundary)."""
    if spec.name == "dp":
        return rule_plans(chain)
    if spec.name == "dp-offload":
        link = options.get("link")
        return rule_plans(chain) + (offload_rule_plans(chain, link) if link is not None else [])
    return []


def min_budget_exact(spec: SolverSpec, chain: Chain, options: dict[str, Any]) -> int:
    """The simulated peak of the solver's schedule at its own minimum budget, or of a torch
    rule's plan below it."""
    low = spec.min_budget(chain, **options)
    got = _attempt(spec, chain, low, options)
    rules = [r[1] for r in _rules(spec, chain, options)]
    return min([low if got is None else min(low, got[1]), *rules])


def _batch(
    spec: SolverSpec, chain: Chain, budgets: list[int], options: dict[str, Any]
) -> list[tuple[Schedule, int, int]]:
    """The solver's schedules at `budgets` that exist, each with its simulated peak and the
    budget it was solved at: from one table when the solver has a trade-off (`dp`)."""
    if spec.tradeoff is not None:
        got = spec.tradeoff(chain, budgets, **options)
        return [(s, s.predicted.peak_bytes, b) for s, b in zip(got, budgets, strict=True) if s]
    out = []
    for b in budgets:
        if (one := _attempt(spec, chain, b, options)) is not None:
            out.append((one[0], one[1], b))
    return out


def _grid(low: int, high: int) -> list[int]:
    return sorted({low + (high - low) * k // (GRID - 1) for k in range(GRID)})


def solve_exact(
    spec: SolverSpec, chain: Chain, budget_bytes: int, options: dict[str, Any]
) -> Schedule:
    """The fastest schedule `spec` gives at some budget whose simulated peak is within
    `budget_bytes` (see the module notes). For ``dp-offload``, ``dp``'s is weighed too (its
    promise: never slower than ``dp``)."""
    got = _solve_exact(spec, chain, budget_bytes, options)
    if spec.name != "dp-offload":
        return got
    from checkpoint_solver.solvers._registry import REGISTRY

    try:
        plain = _solve_exact(REGISTRY["dp"], chain, budget_bytes, {})
    except InfeasibleBudgetError:
        return got
    p, q = got.predicted, plain.predicted
    if q.compute_time < (p.compute_time + p.stall_time) * (1 - 1e-12):
        return plain.replace(
            solver="dp-offload",
            options={k: v for k, v in options.items() if k != "link"},
            link=options.get("link"),
            predicted=dataclasses.replace(q, stall_time=0.0, host_peak_bytes=0),
            notes="no offload plan is faster at this budget and link: dp's schedule; "
            + plain.notes,
        )
    return got


def _solve_exact(
    spec: SolverSpec, chain: Chain, budget_bytes: int, options: dict[str, Any]
) -> Schedule:
    rule = fastest_rule(_rules(spec, chain, options), budget_bytes)
    best = _attempt(spec, chain, budget_bytes, options)
    low, used = budget_bytes, budget_bytes
    if best is None:
        low = used = spec.min_budget(chain, **options)
        best = _attempt(spec, chain, low, options)
    if best is not None and best[1] > budget_bytes:  # the solver's accounting is not a bound
        best = None
    if best is None and rule is None:
        raise InfeasibleBudgetError(budget_bytes, min_budget_exact(spec, chain, options), spec.name)
    high = max(low, _additive_store_all(chain))
    # The simulated peak is not monotone in the solver's budget (a plan that keeps one more
    # boundary can share a value with the one before it), so bisection misses plans: scan a
    # grid over [low, high], then a finer grid around the fastest point that fits.
    for _ in range(ROUNDS):
        grid = _grid(low, high)
        fits = [g for g in _batch(spec, chain, grid, options) if g[1] <= budget_bytes]
        for sched, peak, b in fits:
            if best is None or _faster(best, (sched, peak)) is not best:
                best, used = (sched, peak), b
        if len(grid) < 3:
            break
        step = (high - low) / (GRID - 1)
        low, high = max(low, int(used - step)), min(high, int(used + step) + 1)
    if rule is not None and (
        best is None or rule[2] < best[0].predicted.compute_time + best[0].predicted.stall_time
    ):
        ops, peak, compute_time = rule
        which = "a torch rule's plan (per-block or checkpoint_sequential)"
        if any(isinstance(op, Offload) for op in ops):
            # An offload baseline's time is its step time: the schedule records compute alone.
            compute_time = simulate_ops(chain, ops, link=options.get("link")).compute_time
            which = "an offload baseline's plan (Unsloth- or torchtune-style)"
        note = (
            f"boundary values counted once per copy: {which} is faster within the budget than "
            f"{spec.name}'s at any budget it was run at, simulated peak {peak} bytes; no "
            f"optimality claim"
        )
        return make_schedule(
            chain,
            budget_bytes,
            ops,
            solver=spec.name,
            peak_bytes=peak,
            compute_time=compute_time,
            options={k: v for k, v in options.items() if k != "link"},
            status=Status.HEURISTIC,
            gap=None,
            lower_bound=None,
            notes=note,
            link=options.get("link"),
        )
    assert best is not None
    sched, peak = best
    note = (
        f"boundary values counted once per copy: solved by {spec.name} at {used} bytes (where "
        f"each boundary counts every value crossing it), simulated peak {peak} bytes; no "
        f"optimality claim in this accounting"
    )
    return sched.replace(
        budget_bytes=budget_bytes,
        status=Status.HEURISTIC,
        gap=None,
        lower_bound=None,
        notes=(sched.notes + "; " if sched.notes else "") + note,
    )
