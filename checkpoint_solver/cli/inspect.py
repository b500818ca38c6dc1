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
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect_cmd(schedule: str, show_ops: bool, as_json: bool) -> None:
    """Summarize a schedule file: solver, status, budget, prediction, op counts."""
    from checkpoint_solver import format_bytes, load_schedule

    sched = load_schedule(schedule)
    summary = summarize(sched)
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
    click.echo(table(("field", "value"), rows))
    if show_ops:
        click.echo("")
        click.echo("\n".join(f"{k:5d}  {op}" for k, op in enumerate(sched.ops)))
