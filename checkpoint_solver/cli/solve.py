"""``checkpoint-solver solve``."""

from __future__ import annotations

import json
from typing import Any

import click

from checkpoint_solver.cli._output import emit_json, table

__all__ = ["parse_link", "parse_options", "solve_cmd"]


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """Turn ``("segments=4", "name=x")`` into ``{"segments": 4, "name": "x"}`` (JSON values)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def parse_link(gbps: str | None, host_budget: str | None) -> Any:
    """``--link-gbps`` and ``--host-budget`` as a `HostLink`."""
    from checkpoint_solver.schedule import HostLink

    if gbps is None:
        raise click.BadParameter("give the link's bandwidth too", param_hint="--link-gbps")
    try:
        ways = [float(v) for v in gbps.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{gbps!r} is not GBPS or D2H,H2D", param_hint="--link-gbps"
        ) from None
    if len(ways) not in (1, 2):
        raise click.BadParameter(f"{gbps!r} is not GBPS or D2H,H2D", param_hint="--link-gbps")
    return HostLink.gbps(ways[0], ways[-1], host_budget=host_budget)


@click.command("solve")
@click.argument("problem")
@click.option("--budget", "-b", required=True, help='Memory budget: bytes or e.g. "2GiB", "512MB".')
@click.option("--solver", "-s", default="auto", show_default=True, help="Solver name.")
@click.option(
    "--option", "-o", "options", multiple=True, help="Solver option KEY=VALUE (repeatable)."
)
@click.option(
    "--scope",
    type=click.Choice(["auto", "activations", "step"]),
    default="auto",
    show_default=True,
    help="What the budget covers: activations, or the whole training step (parameters, "
    "gradients, optimizer state; needs a profile made with --optimizer). auto: the step when "
    "the profile has model states.",
)
@click.option(
    "--headroom",
    help='Keep this much of the budget free (fragmentation): a fraction ("0.1") or bytes ("1GiB").',
)
@click.option(
    "--link-gbps",
    help="For dp-offload: the host link's bandwidth in GB/s, one value for both ways or "
    "D2H,H2D (e.g. 25 or 24,26).",
)
@click.option("--host-budget", help='For dp-offload: host memory the copies may hold ("64GiB").')
@click.option("--out", type=click.Path(dir_okay=False), help="Write the schedule JSON here.")
@click.option("--no-timing", is_flag=True, help="Write solve_s as null (byte-stable files).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def solve_cmd(
    problem: str,
    budget: str,
    solver: str,
    options: tuple[str, ...],
    scope: str,
    headroom: str | None,
    link_gbps: str | None,
    host_budget: str | None,
    out: str | None,
    no_timing: bool,
    as_json: bool,
) -> None:
    """Solve PROBLEM (a JSON file, or example:NAME) for a memory budget."""
    from checkpoint_solver import format_bytes, load_problem, solve

    prob = load_problem(problem)
    room: float | str | None = headroom
    if headroom is not None:
        try:
            value = float(headroom)
            room = value if 0 <= value < 1 else headroom
        except ValueError:
            room = headroom
    extra = parse_options(options)
    if link_gbps is not None or host_budget is not None:
        extra["link"] = parse_link(link_gbps, host_budget)
    sched = solve(prob, budget, solver, scope=scope, headroom=room, **extra)
    if out:
        sched.save(out, timing=not no_timing)
    if as_json:
        emit_json({"schedule": sched.to_dict(timing=not no_timing), "saved_to": out})
        return
    p = sched.predicted
    rows = [
        ("solver", sched.solver),
        ("status", sched.status.value),
        ("budget", f"{format_bytes(sched.budget_bytes)} ({sched.budget_bytes} B)"),
        ("scope", "whole step" if sched.scope == "step" else "activations"),
        ("predicted peak", f"{format_bytes(p.peak_bytes)} ({p.peak_bytes} B)"),
        ("compute time", f"{p.compute_time:.6g} {prob.cost_unit}"),
        ("overhead", f"{p.overhead:+.2%}"),
        *(
            [
                ("waits for copies", f"{p.stall_time:.6g} {prob.cost_unit}"),
                ("host peak", format_bytes(p.host_peak_bytes or 0)),
            ]
            if sched.link is not None
            else []
        ),
        ("ops", len(sched.ops)),
        ("options", json.dumps(dict(sched.options), sort_keys=True)),
    ]
    if sched.notes:
        rows.append(("notes", sched.notes))
    if out:
        rows.append(("saved to", out))
    click.echo(table(("field", "value"), rows))
