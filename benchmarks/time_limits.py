"""Every graph solver at ``time_limit=5`` on a 300-node random DAG (about 13,700 edges), budget
halfway between the greedy's minimum and the store-all peak: wall time, status, overhead.

``time_limit`` is the whole solve's (the MILP's or LP's build included); issue 18 asks it be
honoured within 1.2 x + 2 s.

    python benchmarks/time_limits.py            # writes RESULTS.md "time_limits"
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import checkpoint_solver as cs
from benchmarks._common import table, write_section
from checkpoint_solver.problem.synthetic import random_dag

SOLVERS = ("greedy", "hierarchical", "ilp", "ilp-rounding", "cpsat", "auto")
LIMITED = {"hierarchical", "ilp", "ilp-rounding", "cpsat", "auto"}


def main() -> None:
    warnings.simplefilter("ignore")
    graph = random_dag(300, seed=1)
    low, high = cs.min_budget(graph, "greedy"), cs.min_budget(graph, "store_all")
    budget = (low + high) // 2
    rows = []
    for solver in SOLVERS:
        if solver == "cpsat" and "cpsat" not in cs.available_solvers():
            continue
        if solver == "hierarchical":
            budget_here = max(budget, cs.min_budget(graph, solver))
        else:
            budget_here = budget
        options = {"time_limit": 5} if solver in LIMITED else {}
        began = time.perf_counter()
        sched = cs.solve(graph, budget_here, solver, **options)
        took = time.perf_counter() - began
        rows.append(
            [
                solver,
                budget_here,
                f"{took:.1f} s",
                sched.status.value,
                f"{sched.predicted.overhead:+.1%}",
                sched.notes.split(";")[0][:70],
            ]
        )
    body = (
        f"random_dag(300, seed=1): {len(graph.edges)} edges; greedy minimum {low} B, store-all "
        f"{high} B; budget {budget} B (hierarchical: its own minimum when higher: on a random "
        f"DAG cut into segments it reaches no lower than store-all).\n\n"
        + table(["solver", "budget (B)", "wall time", "status", "overhead", "notes"], rows)
    )
    print(body)
    write_section("time_limits", body)


if __name__ == "__main__":
    main()
