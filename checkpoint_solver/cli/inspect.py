"""``checkpoint-solver inspect``."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import click

from checkpoint_solver.cli._output import emit_json, table
from checkpoint_solver.schedule import Bwd, Compute, Schedule

__all__ = ["inspect_cmd", "summarize"]


def summarize(schedule: Schedule) -> dict[str, Any]:
    """Counts of each op type and how many times each stage or node is computed."""
    kinds = Counter(str(op).split("(")[0] for op in schedule.ops)
    computed: Counter[int] = Counter()
    for op in schedule.ops:
        if isinstance(op, Compute):
            computed[op.node] += 1
        elif not isinstance(op, Bwd) and hasattr(op, "stage"):
            computed[op.stage] += 1
    recomputed = {k: n - 1 for k, n in sorted(computed.items()) if n > 1}
    return {"op_counts": dict(sorted(kinds.items())), "recomputed": recomputed}


@click.command("inspect")
@click.argument("schedule", type=click.Path(dir_okay=False))
@click.option("--ops", "show_ops", is_flag=True, help="List every op.")
@click.option(
    "--problem", "-p", help="The schedule's problem (JSON file or example:NAME): simulate it too."
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    help="Write the memory-over-time plot here (PNG; needs --problem).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect_cmd(
    schedule: str, show_ops: bool, problem: str | None, plot: str | None, as_json: bool
) -> None:
    """Summarize a schedule file: solver, status, budget, prediction, op counts; with --problem,
    the simulated peak and where it happens, and with --plot, memory over time as a PNG.

    \b
    Examples:
      checkpoint-solver inspect s.json
      checkpoint-solver inspect s.json --problem gpt.profile.json --plot memory.png
    """
    from checkpoint_solver import format_bytes, load_problem, load_schedule, simulate

    sched = load_schedule(schedule)
    summary = summarize(sched)
    if plot and not problem:
        raise click.UsageError("--plot needs --problem (the plot is the simulated memory)")
    report = None
    if problem:
        report = simulate(load_problem(problem), sched)
        summary["simulated"] = {
            "valid": report.valid,
            "peak_bytes": report.peak_bytes,
            "peak_index": report.peak_index,
            "overhead": report.overhead,
            "violation": None if report.violation is None else str(report.violation.reason),
        }
        if plot:
            from checkpoint_solver.curves import plot_memory

            plot_memory(sched, report, plot)
    if as_json:
        data = sched.to_dict()
        data["summary"] = summary
        emit_json(data)
        return
    p = sched.predicted
    what = "stage" if sched.kind == "chain" else "node"
    recomputed = summary["recomputed"]
    rows = [
        ("problem", f"{sched.kind}, {sched.size} {what}s, {sched.fingerprint[:19]}..."),
        (
            "solver",
            f"{sched.solver} ({sched.status.value}"
            + (f", gap {sched.gap:.2%}" if sched.gap else "")
            + ")",
        ),
        ("options", json.dumps(dict(sched.options), sort_keys=True)),
        ("budget", f"{format_bytes(sched.budget_bytes)} ({sched.budget_bytes} B)"),
        ("predicted peak", f"{format_bytes(p.peak_bytes)} ({p.peak_bytes} B)"),
        ("compute time", f"{p.compute_time:.6g}"),
        ("overhead", f"{p.overhead:+.2%}"),
        ("ops", ", ".join(f"{k}: {n}" for k, n in summary["op_counts"].items())),
        (f"recomputed {what}s", ", ".join(f"{k}x{n}" for k, n in recomputed.items()) or "none"),
    ]
    if sched.notes:
        rows.append(("notes", sched.notes))
    if report is not None:
        rows.append(
            (
                "simulated",
                f"{'valid' if report.valid else 'INVALID'}, peak {format_bytes(report.peak_bytes)} "
                f"at op {report.peak_index} ({sched.ops[report.peak_index]}), overhead "
                f"{report.overhead:+.2%}"
                + (f"; {report.violation.reason}" if report.violation else ""),
            )
        )
    if plot:
        rows.append(("plot", plot))
    click.echo(table(("field", "value"), rows))
    if show_ops:
        click.echo("")
        click.echo("\n".join(f"{k:5d}  {op}" for k, op in enumerate(sched.ops)))
