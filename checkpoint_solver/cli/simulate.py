"""``checkpoint-solver simulate``."""

from __future__ import annotations

import sys

import click

from checkpoint_solver.cli._output import emit_json, table

__all__ = ["simulate_cmd"]


@click.command("simulate")
@click.argument("problem")
@click.argument("schedule", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def simulate_cmd(problem: str, schedule: str, as_json: bool) -> None:
    """Replay SCHEDULE on PROBLEM: validity, peak memory, time. Exit 1 when invalid."""
    from checkpoint_solver import format_bytes, load_problem, load_schedule, simulate

    prob = load_problem(problem)
    sched = load_schedule(schedule)
    r = simulate(prob, sched)
    v = r.violation
    if as_json:
        emit_json(
            {
                "valid": r.valid,
                "violation": None
                if v is None
                else {"index": v.index, "op": v.op, "reason": v.reason},
                "peak_bytes": r.peak_bytes,
                "peak_index": r.peak_index,
                "budget_bytes": r.budget_bytes,
                # An invalid schedule's times stop at its violation: no overhead to report.
                "compute_time": r.compute_time,
                "recompute_time": r.recompute_time if r.valid else None,
                "overhead": r.overhead if r.valid else None,
                "timeline": list(r.timeline),
            }
        )
    else:
        rows = [
            ("valid", "yes" if r.valid else "NO"),
            ("peak", f"{format_bytes(r.peak_bytes)} ({r.peak_bytes} B) at op {r.peak_index}"),
            ("budget", f"{format_bytes(sched.budget_bytes)} ({sched.budget_bytes} B)"),
            (
                "compute time",
                f"{r.compute_time:.6g} {prob.cost_unit}"
                + ("" if r.valid else " (up to the violation)"),
            ),
            ("recompute time", f"{r.recompute_time:.6g} {prob.cost_unit}" if r.valid else "-"),
            ("overhead", f"{r.overhead:+.2%}" if r.valid else "-"),
        ]
        if v is not None:
            rows.append(("violation", f"op {v.index} ({v.op}): {v.reason}"))
        click.echo(table(("field", "value"), rows))
    if not r.valid:
        sys.exit(1)
