"""``ilp``: the Checkmate MILP on open solvers (HiGHS, CBC), with honest status and gap.

See `checkpoint_solver.solvers._milp` for the formulation. The solve is warm-started from the greedy
heuristic when that fits the budget (HiGHS and CBC); a time limit returns the best schedule found with
the solver's best bound; a time limit of 0 returns the heuristic with the trivial bound (every node
computed once). The status is ``optimal`` only when the backend proved it with a zero gap.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from checkpoint_solver.errors import (
    CheckpointSolverError,
    InfeasibleBudgetError,
    InvalidOptionError,
)
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Schedule, Status
from checkpoint_solver.solvers import _milp
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._stages import (
    BoolMatrix,
    OpGraph,
    greedy_plan,
    plan_is_valid,
    plan_ops,
    plan_peak,
    plan_time,
)

__all__ = ["min_budget_ilp", "require_working_set", "solve_ilp", "working_set_bound"]


def working_set_bound(g: OpGraph) -> int:
    """A lower bound on any schedule's peak: computing node v needs its inputs and its output."""
    need = [int(g.size[v]) + sum(int(g.size[u]) for u in g.preds[v]) for v in range(g.n)]
    return g.base_bytes + max(need, default=0)


def require_working_set(g: OpGraph, budget_bytes: int, solver: str) -> int:
    """The working-set bound of `g`; raises InfeasibleBudgetError when `budget_bytes` is below it."""
    floor = working_set_bound(g)
    if budget_bytes < floor:
        raise InfeasibleBudgetError(
            budget_bytes,
            None,
            solver,
            hint=f"no schedule can fit below {floor} bytes (the largest node with its inputs)",
        )
    return floor


ORDERS = ("given", "search")


def _op_graph(graph: Graph, order: str) -> tuple[OpGraph, str]:
    """The op graph the MILP numbers its stages by, and a note when it is not the graph's own."""
    if order not in ORDERS:
        raise InvalidOptionError(
            f"order={order!r} is not one of {', '.join(ORDERS)}: 'given' computes nodes for the "
            f"first time in the graph's numbering (Checkmate), 'search' in a topological order "
            f"with a lower store-all peak when one is found"
        )
    if order == "search":
        from checkpoint_solver.solvers.graph_greedy import op_graph_orders

        return op_graph_orders(graph)[-1]
    return OpGraph.of(graph), ""


def _check_options(
    backend: str, time_limit: float | None, rel_gap: float, threads: int | None
) -> None:
    if backend not in _milp.BACKENDS:
        raise InvalidOptionError(
            f"backend={backend!r} is not one of {', '.join(_milp.BACKENDS)}; available here: "
            f"{', '.join(_milp.available_backends()) or 'none'}"
        )
    if time_limit is not None and (
        not isinstance(time_limit, (int, float)) or math.isnan(time_limit) or time_limit < 0
    ):
        raise InvalidOptionError(
            f"time_limit={time_limit!r} must be seconds >= 0 (or None for no limit)"
        )
    if not isinstance(rel_gap, (int, float)) or not 0 <= rel_gap < 1:
        raise InvalidOptionError(f"rel_gap={rel_gap!r} must be in [0, 1); 0 proves optimality")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidOptionError(f"threads={threads!r} must be a positive integer or None")
    _milp.require_backend(backend)


def schedule_from_plan(
    graph: Graph,
    g: OpGraph,
    budget_bytes: int,
    plan: tuple[BoolMatrix, BoolMatrix],
    *,
    solver: str,
    options: dict[str, object],
    status: Status,
    lower_bound: float | None,
    notes: str,
) -> Schedule:
    """Wrap a stage plan as a Schedule; peak and time come from the plan's own accounting."""
    R, S = plan
    time = plan_time(g, R)
    gap = None
    if lower_bound is not None and time > 0:
        gap = max(0.0, (time - lower_bound) / time)
    if status is Status.OPTIMAL:
        gap = 0.0
    return make_schedule(
        graph,
        budget_bytes,
        plan_ops(g, R, S),
        solver=solver,
        peak_bytes=plan_peak(g, R, S),
        compute_time=time,
        options=options,
        status=status,
        gap=gap,
        lower_bound=lower_bound,
        notes=notes,
    )


def solve_ilp(
    graph: Graph,
    budget_bytes: int,
    /,
    *,
    backend: str = "highs",
    time_limit: float | None = None,
    rel_gap: float = 0.0,
    threads: int | None = None,
    warm_start: bool = True,
    order: str = "given",
) -> Schedule:
    """Solve the Checkmate MILP for `graph` within `budget_bytes`.

    Parameters
    ----------
    backend : {"highs", "cbc"}
        HiGHS through highspy, or CBC (bundled with pulp) through an MPS file.
    time_limit : float | None
        Seconds for the whole solve (order search, heuristic, model build and MILP); ``None``
        runs until proven optimal, ``0`` returns the heuristic.
    rel_gap : float
        Relative MIP gap at which to stop; 0 (default) proves optimality.
    threads : int | None
        Threads for the backend.
    warm_start : bool
        Start the backend from the greedy heuristic's schedule when it fits (HiGHS: setSolution;
        CBC: a MIP start file).
    order : {"given", "search"}
        The order of first computations (Checkmate's stages): the graph's numbering, or a
        topological order with a lower store-all peak when `checkpoint_solver.solvers._order`
        finds one (the note then says so). ``optimal`` means optimal among schedules whose first
        computations follow that order; a schedule that computes every node once is optimal
        outright.

    Raises
    ------
    InfeasibleBudgetError
        When the budget is below the working-set bound, or the MILP proves no schedule fits.
    SolverUnavailableError
        When the backend is not installed; the message names the available ones.
    """
    _check_options(backend, time_limit, rel_gap, threads)
    began = time.perf_counter()
    g, where = _op_graph(graph, order)
    options: dict[str, object] = {"backend": backend, "rel_gap": rel_gap}
    if time_limit is not None:
        options["time_limit"] = time_limit
    if order != "given":
        options["order"] = order
    suffix = f"; {where}" if where else ""
    trivial = graph.store_all_time
    floor = require_working_set(g, budget_bytes, "ilp")
    if g.n == 0:
        return schedule_from_plan(
            graph,
            g,
            budget_bytes,
            (np.zeros((0, 0), bool), np.zeros((0, 0), bool)),
            solver="ilp",
            options=options,
            status=Status.OPTIMAL,
            lower_bound=0.0,
            notes="no op nodes",
        )
    heuristic = greedy_plan(g, budget_bytes)
    if time_limit == 0:
        if heuristic is None:
            raise CheckpointSolverError(
                "time_limit=0 asks for the heuristic, which found no schedule within the budget; "
                "give the MILP some time (e.g. time_limit=60) or raise the budget"
            )
        return schedule_from_plan(
            graph,
            g,
            budget_bytes,
            heuristic,
            solver="ilp",
            options=options,
            status=Status.HEURISTIC,
            lower_bound=trivial,
            notes="time_limit=0: the greedy heuristic, with the trivial bound" + suffix,
        )
    if heuristic is not None and int(heuristic[0].sum()) == g.n:
        # Every node computed once: no schedule of any order computes less.
        return schedule_from_plan(
            graph,
            g,
            budget_bytes,
            heuristic,
            solver="ilp",
            options=options,
            status=Status.OPTIMAL,
            lower_bound=trivial,
            notes="every node computed once (the heuristic's schedule): optimal for any schedule, "
            "no MILP needed" + suffix,
        )
    model = _milp.build(g, budget_bytes)
    start = (
        model.vector(*heuristic)
        if (heuristic is not None and warm_start and backend == "highs")
        else None
    )
    # The limit covers the whole solve: the order search, the heuristic and the model build
    # come out of it.
    left = None if time_limit is None else max(time_limit - (time.perf_counter() - began), 0.01)
    result = _milp.run(
        model, backend, time_limit=left, rel_gap=rel_gap, threads=threads, warm_start=start
    )
    bound = None if result.bound is None else max(result.bound, trivial)
    if result.status == "infeasible" and heuristic is not None:
        # A schedule in hand refutes the claim (a backend's numerical or time-limit slip): keep
        # the schedule, say so, and prove nothing.
        result = dataclasses.replace(
            result,
            status="no_solution",
            message=f"{backend} reported the budget infeasible, refuted by the heuristic's schedule",
        )
    if result.status == "infeasible":
        raise InfeasibleBudgetError(
            budget_bytes,
            None,
            "ilp",
            hint=f"the MILP proves no schedule fits; every schedule needs at least {floor} bytes",
        )
    candidates = []
    if result.x is not None:
        R, S = result.plan(model)
        if plan_is_valid(g, R, S) and plan_peak(g, R, S) <= budget_bytes:
            candidates.append(("milp", (R, S)))
    if heuristic is not None:
        candidates.append(("heuristic", heuristic))
    if not candidates:
        raise CheckpointSolverError(
            f"no schedule found within time_limit={time_limit} s ({result.message}); raise the "
            f"time limit or the budget"
        )
    source, plan = min(candidates, key=lambda c: plan_time(g, c[1][0]))
    if result.status == "optimal" and source == "milp":
        status, notes = Status.OPTIMAL, f"proven optimal by {backend}"
        bound = plan_time(g, plan[0])
    elif source == "milp":
        status, notes = (
            Status.FEASIBLE,
            f"{backend} stopped ({result.message or 'limit'}) with a gap",
        )
    else:
        status, notes = (
            Status.HEURISTIC,
            f"{backend} found nothing better than the heuristic ({result.message})",
        )
    return schedule_from_plan(
        graph,
        g,
        budget_bytes,
        plan,
        solver="ilp",
        options=options,
        status=status,
        lower_bound=bound if bound is not None else trivial,
        notes=notes + suffix,
    )


def min_budget_ilp(
    graph: Graph,
    /,
    *,
    backend: str = "highs",
    time_limit: float | None = None,
    rel_gap: float = 0.0,
    threads: int | None = None,
    warm_start: bool = True,
    order: str = "given",
) -> int:
    """The least peak of any schedule (first computations in `order`), by the same MILP with
    "minimise the peak" as objective.

    Raises
    ------
    CheckpointSolverError
        When the backend does not prove the minimum within `time_limit`.
    """
    _check_options(backend, time_limit, rel_gap, threads)
    g, _ = _op_graph(graph, order)
    if g.n == 0:
        return g.base_bytes
    total = g.base_bytes + int(g.size.sum())
    model = _milp.build(g, total)
    peak = model.add_col(0.0, float(model.budget_units), False, 1.0)
    model.obj = [0.0] * (len(model.obj) - 1) + [1.0]
    for col in model.u_col.values():
        model.add_row([col, peak], [1.0, -1.0], -np.inf, 0.0)
    result = _milp.run(model, backend, time_limit=time_limit, rel_gap=0.0, threads=threads)
    if result.status != "optimal" or result.x is None:
        raise CheckpointSolverError(
            f"the minimum budget was not proven within time_limit={time_limit} s ({result.message}); "
            f"raise the time limit"
        )
    R, S = result.plan(model)
    return plan_peak(g, R, S)
