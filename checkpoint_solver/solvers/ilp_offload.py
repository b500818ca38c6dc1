"""``ilp-offload``: the Checkmate MILP with a third choice for a kept value: keep it, recompute
it, or let it wait in host memory (offload, then prefetch), over a given `HostLink`.

See `checkpoint_solver.solvers._milp.offload` for the variables, rows and the copy model. The
solve runs ``ilp`` first (its schedule is the warm start and a candidate), then the MILP with
the offload columns in the time left; the schedule the simulator times fastest is returned, so
``ilp-offload`` is never predicted slower than ``ilp`` with the same options.

**What "optimal" means here.** When the backend proves the MILP optimal: optimal within its copy
model (each stage's copies beside that stage's compute; a prefetched value is read in the next
stage), among schedules whose first computations follow the graph's order. The predicted time is
the simulator's, which can be above the MILP's objective (an offload's copy must end by the
value's free, and copies queue across stages), so the status is ``heuristic`` and the note gives
both numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from checkpoint_solver.errors import InvalidOptionError
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Compute, Free, HostLink, Op, Schedule, Status
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers import _milp
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._deadline import Deadline
from checkpoint_solver.solvers._milp.offload import add_offload, offload_plan_ops
from checkpoint_solver.solvers._options import SolverOptions
from checkpoint_solver.solvers._plans import BoolMatrix, OpGraph, plan_is_valid
from checkpoint_solver.solvers.ilp import _check_options, min_budget_ilp, solve_ilp

__all__ = ["IlpOffloadOptions", "min_budget_ilp_offload", "solve_ilp_offload"]


@dataclass(frozen=True)
class IlpOffloadOptions(SolverOptions):
    """``ilp-offload``'s options (see `solve_ilp_offload`)."""

    link: HostLink | None = None
    backend: str = "highs"
    time_limit: float | None = None
    rel_gap: float = 0.0
    threads: int | None = None

    def check(self) -> None:
        if not isinstance(self.link, HostLink):
            raise InvalidOptionError(
                f"link={self.link!r}: ilp-offload needs the host link to copy over, e.g. "
                f"link=cs.HostLink.gbps(25) (25 GB/s each way), or cs.measure_link('cuda')"
            )
        _check_options(self.backend, self.time_limit, self.rel_gap, self.threads)


def plan_of_ops(g: OpGraph, ops: tuple[Op, ...] | list[Op]) -> tuple[BoolMatrix, BoolMatrix] | None:
    """The stage plan ``(R, S)`` of a frontier-advancing schedule written by `plan_ops` (stage t
    ends with node t's first computation and the frees after it), or None for other schedules."""
    n = g.n
    index = {v: p for p, v in enumerate(g.nodes)}
    R = np.zeros((n, n), dtype=bool)
    S = np.zeros((n, n), dtype=bool)
    live: set[int] = set()
    t, done = 0, False  # done: node t was computed, stage t ends at the next compute
    for op in ops:
        if not isinstance(op, (Compute, Free)) or op.node not in index:
            return None
        k = index[op.node]
        if isinstance(op, Free):
            live.discard(k)
            continue
        if done:
            t, done = t + 1, False
            S[t, sorted(live)] = True
        if t >= n:
            return None
        R[t, k] = True
        live.add(k)
        done = k == t
    if t != n - 1 or not done or not plan_is_valid(g, R, S):
        return None
    return R, S


def solve_ilp_offload(
    graph: Graph,
    budget_bytes: int,
    /,
    *,
    link: HostLink | None = None,
    backend: str = "highs",
    time_limit: float | None = None,
    rel_gap: float = 0.0,
    threads: int | None = None,
) -> Schedule:
    """The Checkmate MILP with offload (module notes) for `graph` within `budget_bytes`.

    Parameters
    ----------
    link : HostLink
        The device-host link (bandwidth each way) and the host memory budget.
    backend, rel_gap, threads
        As for ``ilp``.
    time_limit : float | None
        Seconds for the whole solve: half for ``ilp``, the rest for the offload MILP.

    Raises
    ------
    InfeasibleBudgetError
        Below ``ilp``'s least budget (offload does not lower it: a value can always be freed
        and recomputed instead of waiting on the host).
    """
    IlpOffloadOptions(
        link=link, backend=backend, time_limit=time_limit, rel_gap=rel_gap, threads=threads
    )
    assert link is not None
    _milp.require_backend(backend)
    deadline = Deadline(time_limit)
    options: dict[str, object] = {"backend": backend, "rel_gap": rel_gap}
    if time_limit is not None:
        options["time_limit"] = time_limit
    half = None if time_limit is None else time_limit / 2
    plain = solve_ilp(
        graph, budget_bytes, backend=backend, time_limit=half, rel_gap=rel_gap, threads=threads
    )
    g = OpGraph.of(graph)
    start = plan_of_ops(g, plain.ops)
    base = plain.predicted.compute_time

    def keep_plain(why: str) -> Schedule:
        return _plain(plain, options, link, why)

    if int(sum(isinstance(op, Compute) for op in plain.ops)) == g.n:
        return keep_plain("every node computed once, nothing to gain by offload")
    model = _milp.build(g, budget_bytes)
    cols = add_offload(model, g, link)
    if not cols.o_col:
        return keep_plain("no value is read late enough to wait on the host")
    warm = model.vector(*start) if start is not None and backend == "highs" else None
    left = deadline.left()
    if left is not None and left <= 0.01:
        return keep_plain(f"time_limit={time_limit} s left no time for the offload MILP")
    result = _milp.run(
        model, backend, time_limit=left, rel_gap=rel_gap, threads=threads, warm_start=warm
    )
    if result.x is None:
        return keep_plain(f"{backend} found no offload schedule ({result.status.value})")
    R, S = result.plan(model)
    O, P = cols.chosen(result.x, g.n)
    ops = offload_plan_ops(g, R, S, O, P)
    report = simulate_ops(graph, ops, budget_bytes=budget_bytes, link=link)
    if not report.valid or report.peak_bytes > budget_bytes:
        return keep_plain(f"the offload MILP's schedule does not fit ({report.violation})")
    if report.step_time >= base * (1 - 1e-12):
        return keep_plain("no offload schedule is faster at this budget and link")
    proven = result.status == _milp.MilpStatus.OPTIMAL
    moved = int(O.sum())
    notes = (
        f"{moved} values offloaded; {'proven optimal' if proven else 'not proven optimal'} by "
        f"{backend} within the MILP's copy model (objective {result.objective:.6g}"
        + ("" if result.bound is None or proven else f", bound {result.bound:.6g}")
        + f"), simulated step time {report.step_time:.6g} against ilp's {base:.6g}"
    )
    return make_schedule(
        graph,
        budget_bytes,
        ops,
        solver="ilp-offload",
        peak_bytes=report.peak_bytes,
        compute_time=report.compute_time,
        options=options,
        status=Status.HEURISTIC,
        notes=notes,
        link=link,
    )


def _plain(plain: Schedule, options: dict[str, object], link: HostLink, why: str) -> Schedule:
    """``ilp``'s schedule as ilp-offload's, with the link and no copies."""
    return plain.replace(
        solver="ilp-offload",
        options=options,
        status=Status.HEURISTIC if plain.status is Status.OPTIMAL else plain.status,
        link=link,
        predicted=dataclasses.replace(plain.predicted, stall_time=0.0, host_peak_bytes=0),
        notes=f"{why}: ilp's schedule ({plain.status.value}: {plain.notes})",
    )


def min_budget_ilp_offload(
    graph: Graph,
    /,
    *,
    link: HostLink | None = None,
    backend: str = "highs",
    time_limit: float | None = None,
    rel_gap: float = 0.0,
    threads: int | None = None,
) -> int:
    """``ilp``'s least budget (see `solve_ilp_offload`'s Raises)."""
    IlpOffloadOptions(
        link=link, backend=backend, time_limit=time_limit, rel_gap=rel_gap, threads=threads
    )
    return min_budget_ilp(
        graph, backend=backend, time_limit=time_limit, rel_gap=rel_gap, threads=threads
    )
