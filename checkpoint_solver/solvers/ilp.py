"""``ilp``: the Checkmate MILP on open solvers (HiGHS, CBC), with honest status and gap.

See `checkpoint_solver.solvers._milp` for the formulation. The solve is warm-started from the greedy
heuristic when that fits the budget (HiGHS and CBC); a time limit returns the best schedule found with
the solver's best bound; a time limit of 0 returns the heuristic with the trivial bound (every node
computed once). The status is ``optimal`` only when the backend proved it with a zero gap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from checkpoint_solver.errors import (
    CheckpointSolverError,
    InfeasibleBudgetError,
    InvalidOptionError,
)
from checkpoint_solver.problem import Graph
from checkpoint_solver.schedule import Schedule, Status
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers import _milp
from checkpoint_solver.solvers._deadline import Deadline, OutOfTime, check_time_limit
from checkpoint_solver.solvers._heuristics import greedy_plan
from checkpoint_solver.solvers._options import SolverOptions, bool_option, int_option, scope_option
from checkpoint_solver.solvers._plans import (
    BoolMatrix,
    OpGraph,
    plan_is_valid,
    plan_ops,
    plan_peak,
    plan_time,
    require_working_set,
    schedule_from_plan,
)
from checkpoint_solver.solvers._step import step_terms
from checkpoint_solver.solvers.graph_greedy import greedy_fallback

__all__ = ["min_budget_ilp", "solve_ilp"]


ORDERS = ("given", "search")


def _check_order(order: str) -> None:
    if not isinstance(order, str) or order not in ORDERS:
        raise InvalidOptionError(
            f"order={order!r} is not one of {', '.join(ORDERS)}: 'given' computes nodes for the "
            f"first time in the graph's numbering (Checkmate), 'search' in a topological order "
            f"with a lower store-all peak when one is found"
        )


def _check_options(
    backend: str, time_limit: float | None, rel_gap: float, threads: int | None
) -> None:
    """The MILP's own options, shared by ``ilp`` and ``ilp-rounding``."""
    if not isinstance(backend, str) or backend not in _milp.BACKENDS:
        raise InvalidOptionError(
            f"backend={backend!r} is not one of {', '.join(_milp.BACKENDS)}; available here: "
            f"{', '.join(_milp.available_backends()) or 'none'}"
        )
    check_time_limit(time_limit)
    if isinstance(rel_gap, bool) or not isinstance(rel_gap, (int, float)) or not 0 <= rel_gap < 1:
        raise InvalidOptionError(f"rel_gap={rel_gap!r} must be in [0, 1); 0 proves optimality")
    int_option("threads", threads, allow_none=True)


@dataclass(frozen=True)
class IlpOptions(SolverOptions):
    """``ilp``'s options (see `solve_ilp`)."""

    backend: str = "highs"
    time_limit: float | None = None
    rel_gap: float = 0.0
    threads: int | None = None
    warm_start: bool = True
    order: str = "given"
    scope: str = "activations"

    def check(self) -> None:
        _check_options(self.backend, self.time_limit, self.rel_gap, self.threads)
        bool_option("warm_start", self.warm_start)
        _check_order(self.order)
        scope_option(self.scope)


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
    scope: str = "activations",
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
        The order of first computations (Checkmate's stages). ``"given"``: the graph's numbering,
        for the MILP and its heuristic alike. ``"search"``: the MILP runs in a topological order
        with a lower store-all peak when `checkpoint_solver.solvers._order` finds one (the note
        says so), and the greedy runs in both orders; a greedy schedule in the graph's order that
        beats the MILP is returned as ``heuristic`` with the trivial bound (the MILP's bound holds
        in its own order only). ``optimal`` means optimal among schedules whose first computations
        follow the MILP's order; a schedule that computes every node once is optimal outright.
    scope : {"activations", "step"}
        ``"step"`` (set by `checkpoint_solver.solve` for a graph with `Graph.states`): the
        budget covers the whole step; each stage's memory rows count the model states and the
        parameter gradients made by then (with frontier-advancing first computations, node i's
        gradients exist from stage i on), so the MILP is exact for the whole step too. Its
        greedy warm start runs at the budget less every state.

    Raises
    ------
    InfeasibleBudgetError
        When the budget is below the working-set bound, or the MILP proves no schedule fits.
    SolverUnavailableError
        When the backend is not installed; the message names the available ones.
    """
    # Long: the solve's phases (heuristic candidates, warm start, the MILP, the fallback) share the
    # candidates, the deadline and the whole-step terms.
    IlpOptions(
        backend=backend,
        time_limit=time_limit,
        rel_gap=rel_gap,
        threads=threads,
        warm_start=warm_start,
        order=order,
        scope=scope,
    )
    _milp.require_backend(backend)
    deadline = Deadline(time_limit)
    orders = _orders(graph, order)
    g, where = orders[0]
    options: dict[str, object] = {"backend": backend, "rel_gap": rel_gap}
    if time_limit is not None:
        options["time_limit"] = time_limit
    if order != "given":
        options["order"] = order
    trivial = graph.store_all_time
    step = scope == "step"
    fixed, margin, extra = step_terms(graph, g) if step else (0, 0, None)
    floor = require_working_set(g, budget_bytes - fixed, "ilp")
    greedy_budget = budget_bytes - margin

    def fits(c: _Candidate) -> bool:
        """A candidate within the budget (a whole step's judged by the simulator)."""
        R, S = c.plan
        if not plan_is_valid(c.g, R, S):
            return False
        if not step:
            return plan_peak(c.g, R, S) <= budget_bytes
        ops = plan_ops(c.g, R, S)
        return simulate_ops(graph, ops, budget_bytes=budget_bytes, scope="step").valid

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
            scope=scope,
        )

    def wrap(c: _Candidate, status: Status, bound: float, notes: str) -> Schedule:
        return schedule_from_plan(
            graph,
            c.g,
            budget_bytes,
            c.plan,
            solver="ilp",
            options=options,
            status=status,
            lower_bound=bound,
            notes=notes + (f"; {c.where}" if c.where else ""),
            scope=scope,
        )

    # The greedy in every order: the warm start (in the MILP's order) and candidates; for a
    # whole step, with each stage's budget less the states there (and, as a fallback, at the
    # budget less them all).
    if step:
        heuristics = _greedy_candidates(orders, budget_bytes, graph)
        if greedy_budget >= 1:
            heuristics += _greedy_candidates(orders, greedy_budget)
    else:
        heuristics = _greedy_candidates(orders, budget_bytes)
    heuristics = [c for c in heuristics if fits(c)]
    fastest = min(heuristics, key=lambda c: c.time, default=None)
    if time_limit == 0:
        if fastest is None:
            raise CheckpointSolverError(
                "time_limit=0 asks for the heuristic, which found no schedule within the budget; "
                "give the MILP some time (e.g. time_limit=60) or raise the budget"
            )
        return wrap(
            fastest,
            Status.HEURISTIC,
            trivial,
            "time_limit=0: the greedy heuristic, with the trivial bound",
        )
    if once := next((c for c in heuristics if c.each_node_once), None):
        # Every node computed once: no schedule of any order computes less.
        return wrap(
            once,
            Status.OPTIMAL,
            trivial,
            "every node computed once (the heuristic's schedule): optimal for any schedule, no "
            "MILP needed",
        )
    heuristic = next((c.plan for c in heuristics if c.g is g), None)
    # The limit covers the whole solve: the order search, the heuristics, the model build and
    # the matrix come out of it; when they use it up, the heuristic's schedule is the answer.
    try:
        model = _milp.build(g, budget_bytes - fixed, extra=extra, deadline=deadline)
        start = (
            model.vector(*heuristic)
            if (heuristic is not None and warm_start and backend == "highs")
            else None
        )
        deadline.check()
    except OutOfTime:
        why = (
            f"time_limit={time_limit} s ran out while building the MILP ({g.n} op nodes, "
            f"{sum(len(p) for p in g.preds)} edges): the greedy's schedule, with the trivial bound"
        )
        fallback = None if step else greedy_fallback(graph, budget_bytes, "ilp", options, why)
        if fallback is not None:
            return fallback
        if fastest is None:
            raise CheckpointSolverError(
                f"{why.split(':')[0]}, and the greedy found no schedule within the budget; raise "
                f"the time limit or the budget"
            ) from None
        return wrap(fastest, Status.HEURISTIC, trivial, why)
    result = _milp.run(
        model,
        backend,
        time_limit=deadline.left(),
        rel_gap=rel_gap,
        threads=threads,
        warm_start=start,
    )
    bound = None if result.bound is None else max(result.bound, trivial)
    if result.status == _milp.MilpStatus.INFEASIBLE and heuristics:
        # A schedule in hand refutes the claim (a backend's numerical or time-limit slip, or a
        # schedule in another order): keep the schedule, say so, and prove nothing.
        result = dataclasses.replace(
            result,
            status=_milp.MilpStatus.NO_SOLUTION,
            message=f"{backend} reported the budget infeasible, refuted by the heuristic's schedule",
        )
    if result.status == _milp.MilpStatus.INFEASIBLE:
        raise InfeasibleBudgetError(
            budget_bytes,
            None,
            "ilp",
            hint=f"the MILP proves no schedule with first computations in this order fits; every "
            f"schedule needs at least {floor} bytes",
        )
    candidates = list(heuristics)
    if result.x is not None:
        milp = _Candidate("milp", g, result.plan(model), where)
        if fits(milp):
            candidates.insert(0, milp)
    if not candidates:
        raise CheckpointSolverError(
            f"no schedule found within time_limit={time_limit} s ({result.message}); raise the "
            f"time limit or the budget"
        )
    best = min(candidates, key=lambda c: c.time)  # the MILP's on a tie (listed first)
    if best.source == "milp" and result.status == _milp.MilpStatus.OPTIMAL:
        return wrap(best, Status.OPTIMAL, best.time, f"proven optimal by {backend}")
    if best.source == "milp":
        return wrap(
            best,
            Status.FEASIBLE,
            bound if bound is not None else trivial,
            f"{backend} stopped ({result.message or 'limit'}) with a gap",
        )
    if best.g is g:
        return wrap(
            best,
            Status.HEURISTIC,
            bound if bound is not None else trivial,
            f"{backend} found nothing better than the heuristic ({result.message})",
        )
    # The greedy in the other order beat the MILP: the MILP's bound holds only in its own order.
    return wrap(
        best,
        Status.HEURISTIC,
        trivial,
        f"the greedy in another order beats what {backend} found in this one "
        f"({result.status.value}{': ' + result.message if result.message else ''}); lower bound: "
        f"every node computed once",
    )


@dataclasses.dataclass(frozen=True)
class _Candidate:
    """A stage plan in the order of op graph `g` (`where` notes that order when it is not the
    graph's own), and where it came from: "milp", "heuristic" or "rounded"."""

    source: str
    g: OpGraph
    plan: tuple[BoolMatrix, BoolMatrix]
    where: str

    @property
    def time(self) -> float:
        return plan_time(self.g, self.plan[0])

    @property
    def each_node_once(self) -> bool:
        """No recomputation: optimal for any schedule in any order."""
        return int(self.plan[0].sum()) == self.g.n


def _greedy_candidates(
    orders: list[tuple[OpGraph, str]], budget_bytes: int, step_of: Graph | None = None
) -> list[_Candidate]:
    """The greedy's plan in each order where it fits `budget_bytes`; with `step_of`, each
    stage's budget less that graph's model states at the stage (`_step.stage_states`)."""
    from checkpoint_solver.solvers._step import stage_states

    out = []
    for og, w in orders:
        less = None if step_of is None else stage_states(step_of, og)
        if (plan := greedy_plan(og, budget_bytes, None, less)) is not None:
            out.append(_Candidate("heuristic", og, plan, w))
    return out


def _orders(graph: Graph, order: str) -> list[tuple[OpGraph, str]]:
    """The op graphs the solve works in, the MILP's first: the graph's own order alone for
    ``order="given"`` (Checkmate's model); for ``"search"`` the searched order, then the graph's
    (the greedy runs in both and the faster schedule wins)."""
    _check_order(order)
    if order == "given":
        return [(OpGraph.of(graph), "")]
    from checkpoint_solver.solvers.graph_greedy import op_graph_orders

    return op_graph_orders(graph)[::-1]


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
    scope: str = "activations",
) -> int:
    """The least budget `solve_ilp` meets with these options: the least peak of any schedule with
    first computations in the MILP's order, by the same MILP with "minimise the peak" as
    objective, or, with ``order="search"``, less when the greedy finds a schedule in the graph's
    own order (which `solve_ilp` then returns). With ``scope="step"`` the whole step's peak
    before the optimizer step (which `checkpoint_solver.min_budget` adds as a floor), in the
    MILP's order only.

    Raises
    ------
    CheckpointSolverError
        When the backend does not prove the minimum within `time_limit`.
    """
    IlpOptions(
        backend=backend,
        time_limit=time_limit,
        rel_gap=rel_gap,
        threads=threads,
        warm_start=warm_start,
        order=order,
        scope=scope,
    )
    _milp.require_backend(backend)
    orders = _orders(graph, order)
    g = orders[0][0]
    if g.n == 0:
        return g.base_bytes
    from checkpoint_solver.solvers.graph_greedy import min_budget_over

    step = scope == "step"
    elsewhere = min_budget_over(orders[1:]) if len(orders) > 1 and not step else None
    fixed, margin, extra = step_terms(graph, g) if step else (0, 0, None)
    total = g.base_bytes + int(g.size.sum()) + margin
    model = _milp.build(g, total, extra=extra)
    peak = model.add_col(0.0, float(model.budget_units), False, 1.0)
    model.obj = [0.0] * (len(model.obj) - 1) + [1.0]
    for (t, k), col in model.u_col.items():
        # peak >= U[t, k] + what is beside the op nodes' values there.
        model.add_row([col, peak], [1.0, -1.0], -np.inf, -float(model.extra_units.get((t, k), 0)))
    result = _milp.run(model, backend, time_limit=time_limit, rel_gap=0.0, threads=threads)
    if result.status != _milp.MilpStatus.OPTIMAL or result.x is None:
        raise CheckpointSolverError(
            f"the minimum budget was not proven within time_limit={time_limit} s ({result.message}); "
            f"raise the time limit"
        )
    R, S = result.plan(model)
    if step:
        # The MILP's own count (its units rounded up) is what solve_ilp checks the budget with.
        counted = g.base_bytes + fixed + round(float(result.objective or 0.0)) * model.scale
        return max(counted, simulate_ops(graph, plan_ops(g, R, S), scope="step").peak_bytes)
    peak = plan_peak(g, R, S)
    return peak if elsewhere is None else min(peak, elsewhere)
