"""``cpsat``: retention intervals on OR-Tools CP-SAT, after the formulation idea of Moccasin
(Bartan, Li, Teague, Lott, Dilkina, ICML 2023). For graphs too large for the Checkmate MILP.

Model. The stage view of `checkpoint_solver.solvers._plans` (stage t computes node t for the first
time and may recompute earlier nodes, in node order) numbered as one timeline of *events*: event
``(t, i)`` for ``i <= t`` has index ``t(t+1)/2 + i``. Each node v owns up to `intervals` retention
intervals ``[start, end)`` on that timeline: the first is mandatory and starts at event ``(v, v)``;
each further optional one starts at some ``(t, v)``, ``t > v`` (a recomputation), after the
previous one ended. When an interval of v starts, every input u of v must have an interval that
started earlier and ends later. Memory is one cumulative constraint: an interval uses the node's
output bytes for its whole length and the budget (less inputs counted in it) is the capacity; a
value is counted during the event of its last use, as in the simulator. The objective is the total
compute: every node once plus each optional interval's cost. O(n * intervals) interval variables
instead of the MILP's O(n^2) booleans.

Guarantee. With ``intervals=k`` a node is computed at most k times, so CP-SAT's proof is optimality
*among schedules that recompute each node at most k-1 times*; the status is then ``feasible`` with
the trivial bound (every node once) as the global lower bound, and the notes say what was proven.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkpoint_solver.errors import (
    CheckpointSolverError,
    InfeasibleBudgetError,
    InvalidOptionError,
    SolverUnavailableError,
)
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Compute, Free, Op, Schedule, Status
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._deadline import Deadline, check_time_limit
from checkpoint_solver.solvers._options import SolverOptions, int_option
from checkpoint_solver.solvers._plans import OpGraph
from checkpoint_solver.solvers.graph_greedy import greedy_fallback

# OR-Tools bundles its own HiGHS, whose symbols clash with highspy's in one process (either import
# order fails), so CP-SAT runs in a child process (`_cpsat_worker.py`, which imports only OR-Tools).

__all__ = ["min_budget_cpsat", "solve_cpsat"]


@dataclass(frozen=True)
class CpsatOptions(SolverOptions):
    """``cpsat``'s options (see `solve_cpsat`)."""

    intervals: int = 2
    time_limit: float | None = 60.0
    threads: int | None = None
    seed: int = 0

    def check(self) -> None:
        int_option("intervals", self.intervals, hint="(retention intervals per node)")
        check_time_limit(self.time_limit)
        if self.time_limit == 0:
            raise InvalidOptionError("time_limit=0 leaves CP-SAT no time; give seconds > 0 or None")
        int_option("threads", self.threads, allow_none=True)
        int_option("seed", self.seed, low=0, hint="(CP-SAT's random seed)")


def solve_cpsat(
    graph: Graph,
    budget_bytes: int,
    /,
    *,
    intervals: int = 2,
    time_limit: float | None = 60.0,
    threads: int | None = None,
    seed: int = 0,
) -> Schedule:
    """Solve the retention-interval model with CP-SAT within `budget_bytes`.

    Parameters
    ----------
    intervals : int
        Retention intervals per node (computations at most); 2 allows one recomputation.
    time_limit : float | None
        Seconds for CP-SAT; None runs to a proof.
    threads : int | None
        CP-SAT workers (default: the machine's cores).
    seed : int
        CP-SAT's random seed.

    Raises
    ------
    InfeasibleBudgetError
        When the budget is below the working-set bound or CP-SAT proves the model infeasible.
    SolverUnavailableError
        When OR-Tools is not installed.
    CheckpointSolverError
        When the time limit passes before any schedule is found.
    """
    CpsatOptions(intervals=intervals, time_limit=time_limit, threads=threads, seed=seed)
    deadline = Deadline(time_limit)
    from checkpoint_solver.solvers._plans import require_working_set

    g = OpGraph.of(graph)
    options: dict[str, object] = {"intervals": intervals, "time_limit": time_limit, "seed": seed}
    require_working_set(g, budget_bytes, "cpsat")
    job = _job(g, max(0, budget_bytes - g.base_bytes), intervals, deadline, threads, seed)
    result = _run_worker(job, time_limit)
    status = result["status"]
    if status == "INFEASIBLE":
        hint = (
            "CP-SAT proves no schedule fits"
            if intervals >= g.n
            else f"CP-SAT proves no schedule that computes each node at most {intervals} times "
            f"fits; raise intervals= or the budget, or try ilp"
        )
        raise InfeasibleBudgetError(budget_bytes, None, "cpsat", hint=hint)
    if status not in ("OPTIMAL", "FEASIBLE"):
        best = result.get("best_peak")
        closest = f"; the lowest peak it reached was {best + g.base_bytes} bytes" if best else ""
        fallback = greedy_fallback(
            graph,
            budget_bytes,
            "cpsat",
            options,
            f"CP-SAT found no schedule within time_limit={time_limit} s ({status}{closest}): "
            f"the greedy's schedule",
        )
        if fallback is not None:
            return fallback
        raise CheckpointSolverError(
            f"cpsat found no schedule within time_limit={time_limit} s ({status}{closest}); "
            f"raise the time limit or the budget"
        )
    chosen = [tuple(c) for c in result["chosen"]]
    ops, peak, time_ = _ops(g, chosen)
    trivial = graph.store_all_time
    proven = status == "OPTIMAL"
    within = f"at most {intervals} computations per node"
    return make_schedule(
        graph,
        budget_bytes,
        ops,
        solver="cpsat",
        peak_bytes=peak,
        compute_time=time_,
        options=options,
        status=Status.FEASIBLE,
        gap=(time_ - trivial) / time_ if time_ > 0 else 0.0,
        lower_bound=trivial,
        notes=(
            f"CP-SAT proved this optimal among schedules with {within}; global lower bound: "
            f"every node computed once"
            if proven
            else f"CP-SAT stopped at its time limit (schedules with {within}); lower bound: every "
            f"node computed once"
        ),
    )


def _job(
    g: OpGraph, capacity: int, intervals: int, deadline: Deadline, threads: int | None, seed: int
) -> dict[str, Any]:
    """The worker's input: the graph, the capacity above its sources, and the whole solve's
    clock (the worker's start and model build come out of it)."""
    left = deadline.left()
    return {
        "size": [int(b) for b in g.size],
        "cost": [float(c) for c in g.cost],
        "preds": [list(p) for p in g.preds],
        "no_recompute": [bool(b) for b in g.no_recompute],
        "capacity": capacity,
        "intervals": intervals,
        "time_limit": None if deadline.end is None else deadline.end - deadline.began,
        "deadline": None if left is None else time.time() + left,
        "threads": threads or os.cpu_count() or 1,
        "seed": seed,
    }


def _run_worker(job: dict[str, Any], time_limit: float | None) -> dict[str, Any]:
    try:
        import ortools  # noqa: F401  (the package only: its native libraries load in the worker)
    except ImportError:
        raise SolverUnavailableError(
            "solver 'cpsat' needs OR-Tools: pip install ortools (or use ilp, ilp-rounding, greedy)"
        ) from None
    grace = None if time_limit is None else time_limit + 30.0
    try:
        out = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("_cpsat_worker.py"))],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=grace,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CheckpointSolverError(
            f"cpsat did not return within {grace:.0f} s of a {time_limit} s limit"
        ) from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise CheckpointSolverError(f"the CP-SAT worker failed: {last}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _ops(g: OpGraph, chosen: list[tuple[int, int, int]]) -> tuple[list[Op], int, float]:
    """Op sequence, peak and time of intervals ``(start, end, op index)``: compute at the start
    event; free once the interval's last event has passed."""
    by_start = sorted(chosen)
    frees: dict[int, list[int]] = {}
    for _, e, v in chosen:
        frees.setdefault(e - 1, []).append(v)
    ops: list[Op] = []
    mem = g.base_bytes
    peak = mem
    time_ = 0.0
    events = sorted({s for s, _, _ in chosen} | set(frees))
    pos = 0
    for x in events:
        while pos < len(by_start) and by_start[pos][0] == x:
            v = by_start[pos][2]
            ops.append(Compute(g.nodes[v]))
            mem += int(g.size[v])
            peak = max(peak, mem)
            time_ += float(g.cost[v])
            pos += 1
        for v in sorted(frees.get(x, ())):
            ops.append(Free(g.nodes[v]))
            mem -= int(g.size[v])
    return ops, peak, time_


def min_budget_cpsat(
    graph: Graph,
    /,
    *,
    intervals: int = 2,
    time_limit: float | None = 60.0,
    threads: int | None = None,
    seed: int = 0,
) -> int:
    """The least budget at which `cpsat` returns a schedule: the least peak of its model (one
    CP-SAT search that minimises the peak, proven within `time_limit`), or the greedy's least
    budget when that is lower (below CP-SAT's reach, `cpsat` returns the greedy's schedule when
    it fits).

    Raises
    ------
    CheckpointSolverError
        When CP-SAT does not prove the least peak within `time_limit`.
    """
    from checkpoint_solver.solvers.graph_greedy import min_budget_greedy

    CpsatOptions(intervals=intervals, time_limit=time_limit, threads=threads, seed=seed)
    g = OpGraph.of(graph)
    if g.n == 0:
        return g.base_bytes
    greedy = min_budget_greedy(graph)
    job = {**_job(g, 0, intervals, Deadline(time_limit), threads, seed), "mode": "min_peak"}
    result = _run_worker(job, time_limit)
    if result["status"] != "OPTIMAL" or result.get("best_peak") is None:
        if result.get("best_peak") is not None and result["best_peak"] + g.base_bytes >= greedy:
            return greedy  # whatever CP-SAT's least peak is, the greedy's is at or below it
        raise CheckpointSolverError(
            f"cpsat did not prove its least peak within time_limit={time_limit} s "
            f"({result['status']}); raise the time limit"
        )
    return min(int(result["best_peak"]) + g.base_bytes, greedy)
