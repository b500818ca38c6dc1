"""``checkpoint-solver tradeoff``."""

from __future__ import annotations

from pathlib import Path

import click

from checkpoint_solver.cli._output import emit_json, table
from checkpoint_solver.problem import Problem

__all__ = ["tradeoff_cmd"]


def _load(problem: str) -> tuple[Problem, list[str] | None]:
    """The problem, and a profile's stage names (to find its blocks; None for other problems),
    from one read of the file."""
    from checkpoint_solver import load_problem
    from checkpoint_solver._io import load_json
    from checkpoint_solver.problem.io import problem_from_dict

    if problem.startswith("example:"):
        return load_problem(problem), None
    data = load_json(problem, "problem")
    names = None
    if isinstance(data, dict) and data.get("format") == "checkpoint_solver.profile":
        names = [str(s.get("name", "")) for s in data.get("stages", [])]
    return problem_from_dict(data, source=f"problem file {problem}"), names


@click.command("tradeoff")
@click.argument("problem")
@click.option("--solvers", help="Comma-separated solvers (default: every solver of the kind).")
@click.option("--points", default=20, show_default=True, help="Budgets per curve.")
@click.option("--png", type=click.Path(dir_okay=False), help="Write the plot here (PNG).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the points here.")
@click.option(
    "--scope",
    type=click.Choice(["auto", "activations", "step"]),
    default="auto",
    show_default=True,
    help="What budgets cover: activations, or the whole step (a profile made with --optimizer).",
)
@click.option(
    "--link-gbps",
    help="Add the offload solvers over a host link of this bandwidth in GB/s (GBPS or D2H,H2D).",
)
@click.option("--host-budget", help='With --link-gbps: host memory the copies may hold ("64GiB").')
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tradeoff_cmd(
    problem: str,
    solvers: str | None,
    points: int,
    png: str | None,
    csv_path: str | None,
    scope: str,
    link_gbps: str | None,
    host_budget: str | None,
    as_json: bool,
) -> None:
    """The memory/time curve of every solver on PROBLEM, with torch's per-block and
    checkpoint_sequential points (chains; a profile's prologue and epilogue are not blocks).

    \b
    Examples:
      checkpoint-solver tradeoff example:transformer-chain --png curve.png --csv curve.csv
      checkpoint-solver tradeoff gpt.profile.json --solvers dp,revolve,sqrt --points 30
      checkpoint-solver tradeoff gpt.profile.json --link-gbps 25   # with dp-offload
    """
    from checkpoint_solver import format_bytes
    from checkpoint_solver.cli.solve import parse_link
    from checkpoint_solver.curves import plot_tradeoff, tradeoff_rows, write_csv
    from checkpoint_solver.solvers.baseline_plans import profile_blocks

    prob, names = _load(problem)
    rows = tradeoff_rows(
        prob,
        [s.strip() for s in solvers.split(",") if s.strip()] if solvers else None,
        points=points,
        blocks=profile_blocks(names) if names else None,
        scope=scope,
        link=None
        if link_gbps is None and host_budget is None
        else parse_link(link_gbps, host_budget),
    )
    if png:
        plot_tradeoff(rows, png, title=f"{Path(problem).name}: memory / time trade-off")
    if csv_path:
        write_csv(rows, csv_path)
    if as_json:
        emit_json({"points": [r.__dict__ for r in rows], "png": png, "csv": csv_path})
        return
    click.echo(
        table(
            ["method", "budget", "peak", "overhead"],
            [
                (
                    r.method,
                    format_bytes(r.budget_bytes) if r.kind == "solver" else "-",
                    format_bytes(r.peak_bytes) if r.peak_bytes is not None else "-",
                    f"{r.overhead:+.1%}" if r.feasible else "infeasible",
                )
                for r in rows
            ],
        )
    )
    for what, path in (("plot", png), ("points", csv_path)):
        if path:
            click.echo(f"{what} written to {path}")
