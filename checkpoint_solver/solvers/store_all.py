"""``store_all``: no recomputation. The memory reference and the time lower bound."""

from __future__ import annotations

from dataclasses import dataclass

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Chain, Graph, Problem, Role
from checkpoint_solver.schedule import Bwd, Compute, Free, FwdTape, Op, Schedule, Status
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._options import SolverOptions, bool_option

__all__ = ["min_budget_store_all", "solve_store_all"]


def _chain_ops(chain: Chain) -> tuple[list[Op], int]:
    """Every stage forward with tape, then every backward; peak from the closed form below."""
    n, x, xbar = chain.length, chain.x, chain.xbar
    ops: list[Op] = [FwdTape(i) for i in range(1, n + 1)]
    ops += [Bwd(i) for i in range(n, 0, -1)]
    # Before B(i) the input a[0], the tapes abar[1..i] and delta[i] are live; B(i) adds delta[i-1].
    tapes = [0] * (n + 1)
    for i in range(1, n + 1):
        tapes[i] = tapes[i - 1] + xbar[i - 1]
    peak = x[0]
    for i in range(1, n + 1):
        peak = max(peak, x[0] + tapes[i] + chain.of[i - 1])
        peak = max(peak, x[0] + tapes[i] + chain.delta[i] + chain.delta[i - 1] + chain.ob[i - 1])
    return ops, peak


def _graph_ops(graph: Graph, free_after_last_use: bool) -> tuple[list[Op], int]:
    """Each op node once in topological order; values freed after their last consumer."""
    order = graph.ops
    pos = {v: p for p, v in enumerate(order)}
    last = {v: max(graph.succs[v], default=v) for v in order}
    ops: list[Op] = []
    for v in order:
        ops.append(Compute(v))
        if free_after_last_use:
            ops.extend(Free(u) for u in graph.preds[v] if graph.role[u] == Role.OP and last[u] == v)
            if not graph.succs[v]:
                ops.append(Free(v))
    # Peak from live intervals [pos(v), pos(last use of v)] (open-ended when nothing is freed).
    base = graph.budget_source_bytes
    delta = [0] * (len(order) + 1)
    for v in order:
        delta[pos[v]] += graph.out_bytes[v]
        if free_after_last_use:
            delta[pos[last[v]] + 1] -= graph.out_bytes[v]
    peak, running = base, base
    for p in range(len(order)):
        running += delta[p]
        peak = max(peak, running)
    return ops, peak


def _plan(problem: Problem, free_after_last_use: bool) -> tuple[list[Op], int]:
    if problem.kind == "chain":
        return _chain_ops(problem)
    return _graph_ops(problem, free_after_last_use)


@dataclass(frozen=True)
class StoreAllOptions(SolverOptions):
    """``store_all``'s options (see `solve_store_all`)."""

    free_after_last_use: bool = True

    def check(self) -> None:
        bool_option("free_after_last_use", self.free_after_last_use)


def solve_store_all(
    problem: Problem, budget_bytes: int, /, *, free_after_last_use: bool = True
) -> Schedule:
    """Keep everything the backward needs; recompute nothing.

    Parameters
    ----------
    problem : Chain | Graph
    budget_bytes : int
    free_after_last_use : bool
        Graphs only: release each value after its last consumer (outputs nothing reads, such as
        parameter gradients, are released right after they are computed). With ``False`` no value
        is ever freed, the naive upper reference. Ignored for chains.

    Returns
    -------
    Schedule
        Status ``optimal``: no schedule computes less than ``store_all`` does.

    Raises
    ------
    InfeasibleBudgetError
        When its peak exceeds the budget; ``min_budget_bytes`` is that peak.
    """
    StoreAllOptions(free_after_last_use)
    ops, peak = _plan(problem, free_after_last_use)
    if peak > budget_bytes:
        raise InfeasibleBudgetError(
            budget_bytes,
            peak,
            "store_all",
            hint="or use a solver that recomputes (for chains: dp, revolve, sqrt, uniform)",
        )
    base = problem.store_all_time
    return make_schedule(
        problem,
        budget_bytes,
        ops,
        solver="store_all",
        peak_bytes=peak,
        compute_time=base,
        options={"free_after_last_use": free_after_last_use} if problem.kind == "graph" else {},
        status=Status.OPTIMAL,
        gap=0.0,
        lower_bound=base,
    )


def min_budget_store_all(problem: Problem, /, *, free_after_last_use: bool = True) -> int:
    """The peak of the store-all schedule."""
    StoreAllOptions(free_after_last_use)
    return _plan(problem, free_after_last_use)[1]
