"""The CP-SAT model of `checkpoint_solver.solvers.cpsat`, solved in a child process.

Reads a job as JSON on stdin (sizes, costs, predecessors, no-recompute flags, capacity, intervals,
time limit, threads, seed) and writes ``{"status": ..., "chosen": [[start, end, node], ...]}``.
Runs apart from the parent because OR-Tools and highspy cannot share a process.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _event(t: int, i: int) -> int:
    return t * (t + 1) // 2 + i


def _left(job: dict[str, Any], limit: float) -> float:
    """Seconds CP-SAT may take: `limit`, and no more than the solve's deadline leaves."""
    deadline = job.get("deadline")
    if deadline is not None:
        limit = min(limit, deadline - time.time())
    return max(0.05, limit)


def solve(job: dict[str, Any]) -> dict[str, Any]:
    # Long: the CP-SAT model in one function: its variables and constraints are written together,
    # as the MILP's rows are in `_milp.build`.
    from ortools.sat.python import cp_model

    size, cost, preds = job["size"], job["cost"], job["preds"]
    no_recompute, intervals = job["no_recompute"], int(job["intervals"])
    n = len(size)
    horizon = _event(n, 0) + 1
    m = cp_model.CpModel()
    starts: list[list[Any]] = []
    ends: list[list[Any]] = []
    present: list[list[Any]] = []
    ivs, demands = [], []
    for v in range(n):
        s_v: list[Any] = []
        e_v: list[Any] = []
        p_v: list[Any] = []
        for j in range(1 if no_recompute[v] else min(intervals, n - v)):
            e = m.new_int_var(1, horizon, f"e{v}_{j}")
            length = m.new_int_var(1, horizon, f"l{v}_{j}")
            if j == 0:
                s: Any = m.new_constant(_event(v, v))
                p: Any = True
                ivs.append(m.new_interval_var(s, length, e, f"i{v}_{j}"))
            else:
                domain = cp_model.Domain.from_values([_event(t, v) for t in range(v + 1, n)])
                s = m.new_int_var_from_domain(domain, f"s{v}_{j}")
                p = m.new_bool_var(f"p{v}_{j}")
                ivs.append(m.new_optional_interval_var(s, length, e, p, f"i{v}_{j}"))
                m.add(s >= e_v[-1]).only_enforce_if(p)  # after the previous interval ends
                if j >= 2:
                    m.add_implication(p, p_v[-1])
            demands.append(int(size[v]))
            s_v.append(s)
            e_v.append(e)
            p_v.append(p)
        starts.append(s_v)
        ends.append(e_v)
        present.append(p_v)
    capacity = int(job["capacity"])
    peak = m.new_int_var(capacity, max(capacity, sum(demands)), "peak")
    m.add_cumulative(ivs, demands, peak)
    for v in range(n):
        for j, s_vj in enumerate(starts[v]):
            for u in preds[v]:
                # Some interval of input u started earlier and is still open when v_j computes.
                witnesses = []
                for k, s_uk in enumerate(starts[u]):
                    b = m.new_bool_var(f"w{u}_{k}_{v}_{j}")
                    m.add(s_uk < s_vj).only_enforce_if(b)
                    m.add(ends[u][k] > s_vj).only_enforce_if(b)
                    if k > 0:
                        m.add_implication(b, present[u][k])
                    witnesses.append(b)
                if j == 0:
                    m.add_bool_or(witnesses)
                else:
                    m.add_bool_or(witnesses).only_enforce_if(present[v][j])
    # Hint: no recomputation, each value kept until its last reader (fits when the budget is at
    # least the store-all peak; otherwise a start for phase 1).
    users: list[list[int]] = [[] for _ in range(n)]
    for v in range(n):
        for u in preds[v]:
            users[u].append(v)
    for v in range(n):
        m.add_hint(ends[v][0], _event(max(users[v], default=v), max(users[v], default=v)) + 1)
        for j in range(1, len(starts[v])):
            m.add_hint(present[v][j], False)
    limit = job["time_limit"]
    start = time.perf_counter()
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = int(job["threads"])
    solver.parameters.random_seed = int(job["seed"])
    # Phase 1 (after Moccasin): find any schedule within the budget by minimising the peak, whose
    # lower bound is the budget; phase 2 minimises compute from it.
    m.minimize(peak)
    if limit is not None:
        solver.parameters.max_time_in_seconds = _left(job, float(limit))
    status = solver.solve(m)
    if job.get("mode") == "min_peak":  # the least peak of the model (capacity 0): no phase 2
        found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        return {
            "status": solver.status_name(status),
            "chosen": [],
            "phase": 1,
            "best_peak": solver.value(peak) if found else None,
        }
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE) or solver.value(peak) > capacity:
        name = "INFEASIBLE" if status == cp_model.INFEASIBLE else "UNKNOWN"
        best = solver.value(peak) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None
        return {"status": name, "chosen": [], "phase": 1, "best_peak": best}
    first = _chosen(solver, starts, ends, present)
    m.clear_hints()  # type: ignore[no-untyped-call]
    for v in range(n):
        for j in range(len(starts[v])):
            if j > 0:
                m.add_hint(present[v][j], solver.boolean_value(present[v][j]))
                m.add_hint(starts[v][j], solver.value(starts[v][j]))
            m.add_hint(ends[v][j], solver.value(ends[v][j]))
    m.add(peak <= capacity)
    top = max(cost, default=0.0)
    scale = 1e6 / top if top > 0 else 1.0
    m.minimize(
        sum(
            round(cost[v] * scale) * present[v][j]
            for v in range(n)
            for j in range(1, len(starts[v]))
        )
    )
    if limit is not None:
        solver.parameters.max_time_in_seconds = _left(
            job, float(limit) - (time.perf_counter() - start)
        )
    status = solver.solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):  # phase 2 ran out of time
        return {"status": "FEASIBLE", "chosen": first, "phase": 1}
    return {
        "status": solver.status_name(status),
        "chosen": _chosen(solver, starts, ends, present),
        "phase": 2,
    }


def _chosen(solver: Any, starts: Any, ends: Any, present: Any) -> list[list[int]]:
    out = []
    for v in range(len(starts)):
        for j in range(len(starts[v])):
            if j == 0 or solver.boolean_value(present[v][j]):
                out.append([solver.value(starts[v][j]), solver.value(ends[v][j]), v])
    return out


def main() -> None:
    json.dump(solve(json.load(sys.stdin)), sys.stdout)


if __name__ == "__main__":
    main()
