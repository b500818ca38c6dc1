"""``ilp-offload`` against ``ilp`` on the Checkmate training graphs: the MILP with offload as a
third choice, at 95 %, 90 % and 85 % of the store-all peak, over two links.

Links (the graphs' costs are profiled time units, not seconds, so a link is given in bytes per
time unit): ``matched``, where the median value copies in the median node's time, and ``4x``,
four times faster. Each solve has a time limit (``--limit``, default 60 s: half for ``ilp``,
which ``ilp-offload`` runs first and weighs, the rest for the offload MILP). Columns: ``ilp``'s
overhead over store-all and status; ``ilp-offload``'s (compute plus the simulator's waits), the
values it moves, its host peak, whether the offload MILP was proven optimal (in its copy model),
and the whole solve's seconds.

    python benchmarks/ilp_offload.py        # writes RESULTS.md "ilp_offload"
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import checkpoint_solver as cs
from benchmarks._common import table, write_section
from checkpoint_solver.schedule import HostLink, OffloadValue
from checkpoint_solver.solvers.store_all import min_budget_store_all

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "checkmate-graphs"
GRAPHS = ["vgg16_train", "vgg19_train", "fcn8_vgg_train"]


def _links(graph: cs.Graph) -> list[tuple[str, HostLink]]:
    ops = graph.ops
    bw = statistics.median(graph.out_bytes[v] for v in ops) / statistics.median(
        graph.cost[v] for v in ops
    )
    return [
        ("matched", HostLink(d2h_bytes_per_s=bw, h2d_bytes_per_s=bw)),
        ("4x", HostLink(d2h_bytes_per_s=4 * bw, h2d_bytes_per_s=4 * bw)),
    ]


def _proven(notes: str) -> str:
    """Whether the offload MILP's schedule was returned proven (in its copy model); "—" when
    ilp's schedule was kept."""
    if "within the MILP's copy model" not in notes:
        return "— (ilp's kept)"
    return "no" if "not proven optimal" in notes else "yes"


def run(name: str, fraction: float, label: str, link: HostLink, limit: float) -> list[object]:
    graph = cs.load_problem(DATA / f"{name}.json")
    base = graph.store_all_time
    budget = int(min_budget_store_all(graph) * fraction)
    row: list[object] = [name, f"{fraction:.0%}", label]
    try:
        plain = cs.solve(graph, budget, "ilp", time_limit=limit / 2)
    except cs.InfeasibleBudgetError:
        return [*row, "infeasible", "", "", "", "", "", "", ""]
    start = time.perf_counter()
    off = cs.solve(graph, budget, "ilp-offload", link=link, time_limit=limit)
    elapsed = time.perf_counter() - start
    report = cs.simulate(graph, off)
    assert report.valid and report.peak_bytes <= budget, report.violation
    step = report.step_time
    ratio = (step / plain.predicted.compute_time) if plain.predicted.compute_time else 1.0
    return [
        *row,
        f"{plain.predicted.compute_time / base - 1:+.2%}",
        plain.status.value,
        f"{step / base - 1:+.2%}",
        f"{ratio:.3f}",
        sum(isinstance(op, OffloadValue) for op in off.ops),
        cs.format_bytes(report.host_peak_bytes or 0),
        _proven(off.notes),
        f"{elapsed:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=float, default=60.0)
    parser.add_argument("--graphs", nargs="*", default=GRAPHS)
    args = parser.parse_args()
    rows = []
    for name in args.graphs:
        graph = cs.load_problem(DATA / f"{name}.json")
        for label, link in _links(graph):
            for fraction in (0.95, 0.9, 0.85):
                rows.append(run(name, fraction, label, link, args.limit))
                print(rows[-1], flush=True)
    headers = [
        "graph",
        "budget (of store-all)",
        "link",
        "ilp overhead",
        "ilp status",
        "ilp-offload overhead",
        "ilp-offload / ilp",
        "values offloaded",
        "host peak",
        "offload MILP proven",
        "solve s",
    ]
    body = (
        f"Time limit {args.limit:g} s per ilp-offload solve (half for ilp); overheads are over "
        f"store-all's compute, ilp-offload's with the simulator's waits for copies.\n\n"
        + table(headers, rows)
    )
    print(body)
    write_section("ilp_offload", body)


if __name__ == "__main__":
    main()
