"""Trade-off curves of every solver with torch's own points, as rows, CSV and PNG plots.

Torch-free: it works on a problem (a chain, a graph, or a profile's chain). The plots need
matplotlib (``pip install "checkpoint_solver[plot]"``); the rows and the CSV do not.

Example
-------
>>> from checkpoint_solver.problem.synthetic import transformer_chain
>>> rows = tradeoff_rows(transformer_chain(6), solvers=["dp", "sqrt"], points=4)
>>> sorted({r.method for r in rows})
['dp', 'sqrt', 'torch per-block', 'torch sequential-2', 'torch sequential-3', 'torch sequential-4']
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkpoint_solver._io import write_atomic
from checkpoint_solver.errors import CheckpointSolverError, InvalidOptionError
from checkpoint_solver.problem import Chain, Problem
from checkpoint_solver.problem.states import resolve_scope
from checkpoint_solver.schedule import HostLink, Schedule
from checkpoint_solver.simulation import SimulationReport

__all__ = ["CurveRow", "plot_memory", "plot_tradeoff", "tradeoff_rows", "write_csv"]


@dataclass(frozen=True)
class CurveRow:
    """One point: a solver at a budget, or one of torch's fixed rules (``kind == "torch"``)."""

    method: str
    kind: str  # "solver" or "torch"
    budget_bytes: int
    peak_bytes: int | None
    compute_time: float
    overhead: float
    feasible: bool


def tradeoff_rows(
    problem: Problem,
    solvers: Sequence[str] | None = None,
    *,
    points: int = 20,
    blocks: tuple[int, int] | None = None,
    scope: str | None = None,
    link: HostLink | None = None,
) -> list[CurveRow]:
    """Each solver's curve at `points` budgets from the smallest feasible budget of any of them to
    the store-all peak (one shared budget grid, so curves compare point by point), plus, on a chain,
    torch's per-block checkpointing and ``checkpoint_sequential`` at 2..sqrt(n)+1 segments.

    `solvers` defaults to every registered solver of the problem's kind except ``auto`` (and, on
    graphs, the slow exact ones: ``ilp``, ``ilp-offload`` and ``cpsat``; name them to include
    them). `blocks` is ``(first, count)`` of the chain's blocks (`baseline_plans.profile_blocks`);
    default: every stage. `scope` is what the budgets and peaks cover, as in
    `checkpoint_solver.solve`.

    With a `link` (a `HostLink`), the offload solvers join (``dp-offload`` on a chain, which
    otherwise has no link to solve for; ``hierarchical``, and ``ilp-offload`` when named, are
    given the link on a graph), and on a chain the Unsloth-style plan
    (`baseline_plans.offload_per_block`) with torch's rules; their times include the waits for
    copies.
    """
    from checkpoint_solver import solvers as registry
    from checkpoint_solver.solvers.store_all import min_budget_store_all

    if points < 2:
        raise InvalidOptionError(f"points={points}; give at least 2")
    named = solvers is not None
    if solvers is None:
        slow = {"auto", "ilp", "ilp-offload", "cpsat"}
        solvers = [s for s in registry.available_solvers(problem.kind) if s not in slow]
    which = resolve_scope(problem, scope)
    high = (
        min_budget_store_all(problem)
        if which == "activations"
        else registry.min_budget(problem, "store_all", scope=which)
    )
    low = high
    usable = []

    def options(s: str) -> dict[str, Any]:
        takes = ("dp-offload", "hierarchical", "ilp-offload")
        return {"link": link} if link is not None and s in takes else {}

    if link is not None and isinstance(problem, Chain) and "dp-offload" not in solvers:
        solvers = [*solvers, "dp-offload"]
    for s in solvers:
        try:
            low = min(low, registry.min_budget(problem, s, scope=which, **options(s)))
        except CheckpointSolverError:
            if named:  # asked for by name: say why it cannot run
                raise
            continue  # a default solver that does not apply here (hierarchical without blocks)
        usable.append(s)
    solvers = usable
    grid = sorted({low + (high - low) * k // (points - 1) for k in range(points)})
    rows = []
    for s in solvers:
        base = problem.store_all_time
        for p in registry.tradeoff(problem, grid, s, scope=which, **options(s)):
            waits = p.stall_time / base if base > 0 else 0.0
            rows.append(
                CurveRow(
                    s,
                    "solver",
                    p.budget_bytes,
                    p.peak_bytes,
                    p.step_time,
                    p.overhead + waits,
                    p.feasible,
                )
            )
    if isinstance(problem, Chain):
        rows += _fixed_rows(problem, blocks, which, link)
    return rows


def _fixed_rows(
    problem: Chain, blocks: tuple[int, int] | None, which: str, link: HostLink | None
) -> list[CurveRow]:
    """Torch's per-block and checkpoint_sequential points (and, with a link, the Unsloth-style
    plan's) on a chain."""
    from checkpoint_solver.solvers import baseline_plans

    rows: list[CurveRow] = []
    first, count = blocks or (1, problem.length)
    fixed = [baseline_plans.torch_per_block(problem, first, count, scope=which)]
    if link is not None:
        fixed.append(baseline_plans.offload_per_block(problem, link, first, count, scope=which))
    for k in range(2, min(count, math.isqrt(count) + 1) + 1):
        fixed.append(baseline_plans.torch_sequential(problem, k, first, count, scope=which))
    for sched in fixed:
        name = sched.solver.replace("torch-per-block", "torch per-block").replace(
            "torch-sequential-", "torch sequential-"
        )
        pred = sched.predicted
        base = problem.store_all_time
        rows.append(
            CurveRow(
                name,
                "torch",
                pred.peak_bytes,
                pred.peak_bytes,
                pred.compute_time + pred.stall_time,
                pred.overhead + (pred.stall_time / base if base > 0 else 0.0),
                True,
            )
        )
    return rows


def write_csv(rows: Sequence[CurveRow], path: str | os.PathLike[str]) -> Path:
    """The rows as CSV (one header line), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["method", "kind", "budget_bytes", "peak_bytes", "compute_time", "overhead", "feasible"]
    )
    for r in rows:
        w.writerow(
            [
                r.method,
                r.kind,
                r.budget_bytes,
                "" if r.peak_bytes is None else r.peak_bytes,
                "" if not r.feasible else repr(r.compute_time),
                "" if not r.feasible else f"{r.overhead:.6f}",
                int(r.feasible),
            ]
        )
    return write_atomic(path, buf.getvalue())


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from checkpoint_solver.errors import SolverUnavailableError

        raise SolverUnavailableError(
            'plots need matplotlib: pip install "checkpoint_solver[plot]" (or pip install '
            "matplotlib); the CSV and the tables work without it"
        ) from None
    return plt


def _save(fig, path: str | os.PathLike[str]) -> Path:  # type: ignore[no-untyped-def]
    """Render to PNG bytes, then write atomically (no half-written image)."""
    import tempfile

    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def plot_tradeoff(
    rows: Sequence[CurveRow], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Overhead (recomputation / store-all time) against peak memory: one line per solver, one
    marker per torch rule. Written as PNG."""
    from checkpoint_solver.units import format_bytes

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        methods = list(dict.fromkeys(r.method for r in rows))
        for m in methods:
            pts = sorted(
                (r.peak_bytes, r.overhead * 100)
                for r in rows
                if r.method == m and r.feasible and r.peak_bytes is not None
            )
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            kind = next(r.kind for r in rows if r.method == m)
            if kind == "torch":
                ax.plot(xs, ys, marker="X", linestyle="none", markersize=9, label=m)
            else:
                ax.step(xs, ys, where="post", marker=".", label=m)
        ax.set_xlabel("peak activation memory (simulated)")
        ax.set_ylabel("recomputation overhead (%)")
        ticks = ax.get_xticks()
        ax.set_xticks(ticks)
        ax.set_xticklabels([format_bytes(int(t)) if t >= 0 else "" for t in ticks], rotation=30)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title or "memory / time trade-off")
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_memory(
    schedule: Schedule, report: SimulationReport, path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Memory while each op runs and after it, with the budget, over the schedule's ops (PNG)."""
    from checkpoint_solver.units import format_bytes

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    try:
        n = len(report.op_peaks)
        ax.bar(range(n), report.op_peaks, width=1.0, alpha=0.35, label="while the op runs")
        ax.step(range(len(report.timeline)), report.timeline, where="mid", label="after the op")
        ax.axhline(schedule.budget_bytes, color="red", linestyle="--", label="budget")
        ax.set_xlabel("op index")
        ax.set_ylabel("memory")
        ticks = ax.get_yticks()
        ax.set_yticks(ticks)
        ax.set_yticklabels([format_bytes(int(t)) if t >= 0 else "" for t in ticks])
        ax.legend(fontsize=8)
        ax.set_title(
            title
            or f"{schedule.solver}: peak {format_bytes(report.peak_bytes)}, overhead "
            f"{report.overhead:+.1%}"
        )
        return _save(fig, path)
    finally:
        plt.close(fig)
