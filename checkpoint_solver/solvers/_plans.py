"""Graph plans: Checkmate's stage view of a graph schedule, shared by the graph solvers (the
plan matrices, their ops, peak and time, the working-set bound, and `schedule_from_plan`); the
heuristics that make plans are in `checkpoint_solver.solvers._heuristics`.

A *stage plan* is two boolean matrices over the op nodes (renumbered ``0..n-1`` in topological
order): ``R[t, i]`` node i is computed in stage t, and ``S[t, i]`` its output is kept from stage
``t-1`` into stage t. In the frontier-advancing form of Jain et al. (Checkmate, MLSys 2020), stage
t computes node t for the first time (``R[t, t] = 1``) and may recompute earlier nodes.

Within a stage, nodes are computed in topological order; right after computing node k, every value
whose last use in the stage is k and that is not kept into the next stage is freed (a value
nothing reads in the stage is freed after it is computed, or at the end of the stage if it was
only carried in). `plan_ops` writes exactly that op sequence and `plan_peak` computes its peak
from the matrices, by the same rule, without replaying ops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.problem import Graph, RngPolicy
from checkpoint_solver.schedule import Compute, Free, Op, Schedule, Status
from checkpoint_solver.solvers._common import make_schedule

__all__ = [
    "OpGraph",
    "optimal_r",
    "plan_ops",
    "plan_peak",
    "require_working_set",
    "schedule_from_plan",
    "working_set_bound",
]

BoolMatrix = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class OpGraph:
    """The op nodes of a `Graph`, renumbered 0..n-1, with what the stage view needs."""

    nodes: tuple[int, ...]  # op index -> graph node
    size: npt.NDArray[np.int64]
    cost: npt.NDArray[np.float64]
    preds: tuple[tuple[int, ...], ...]  # op-index predecessors that are ops
    users: tuple[tuple[int, ...], ...]
    no_recompute: npt.NDArray[np.bool_]
    base_bytes: int  # inputs/params counted in the budget

    @classmethod
    def of(cls, graph: Graph) -> OpGraph:
        nodes = graph.ops
        index = {v: p for p, v in enumerate(nodes)}
        preds = tuple(tuple(index[u] for u in graph.preds[v] if u in index) for v in nodes)
        users: list[list[int]] = [[] for _ in nodes]
        for p, ps in enumerate(preds):
            for u in ps:
                users[u].append(p)
        base = graph.budget_source_bytes
        return cls(
            nodes=nodes,
            size=np.array([graph.out_bytes[v] for v in nodes], dtype=np.int64),
            cost=np.array([graph.cost[v] for v in nodes], dtype=np.float64),
            preds=preds,
            users=tuple(tuple(u) for u in users),
            no_recompute=np.array([graph.rng[v] == RngPolicy.FORBID_RECOMPUTE for v in nodes]),
            base_bytes=base,
        )

    @property
    def n(self) -> int:
        return len(self.nodes)


def optimal_r(g: OpGraph, S: BoolMatrix) -> BoolMatrix:
    """The cheapest R for a retention matrix S (Checkmate's ``solve_r_opt``).

    In stage t a node is computed when it is the frontier t, or when it must be kept into stage
    t+1 but is not carried in, or when a node computed in the stage reads it and it is not
    carried in. Walking nodes in reverse topological order settles each in one pass.
    """
    R = np.zeros((g.n, g.n), dtype=bool)
    for t in range(g.n):
        R[t] = optimal_r_stage(g, S, t)
    return R


def _stage_events(
    g: OpGraph, R: BoolMatrix, S: BoolMatrix, t: int
) -> tuple[list[int], dict[int, list[int]], list[int]]:
    """Computed nodes of stage t, the values freed after each, and those freed at the stage end."""
    n = g.n
    keep_next = S[t + 1] if t + 1 < n else np.zeros(n, dtype=bool)
    computed = [k for k in range(t + 1) if R[t, k]]
    live = {i for i in range(t) if S[t, i]} | set(computed)
    last: dict[int, int] = {}
    for k in computed:
        last[k] = max(last.get(k, k), k)
        for u in g.preds[k]:
            last[u] = k
    frees: dict[int, list[int]] = {k: [] for k in computed}
    for i, k in last.items():
        if not keep_next[i]:
            frees[k].append(i)
    end = sorted(i for i in live if i not in last and not keep_next[i])
    for k in frees:
        frees[k].sort()
    return computed, frees, end


def plan_ops(
    g: OpGraph, R: BoolMatrix, S: BoolMatrix, starts: Callable[[int], list[Op]] | None = None
) -> list[Op]:
    """The op sequence of a stage plan, in graph node ids; `starts(t)`: ops issued at stage t's
    start (an offload plan's copies)."""
    ops: list[Op] = []
    for t in range(g.n):
        if starts is not None:
            ops.extend(starts(t))
        computed, frees, end = _stage_events(g, R, S, t)
        for k in computed:
            ops.append(Compute(g.nodes[k]))
            ops.extend(Free(g.nodes[i]) for i in frees[k])
        ops.extend(Free(g.nodes[i]) for i in end)
    return ops


def plan_peak(g: OpGraph, R: BoolMatrix, S: BoolMatrix) -> int:
    """Peak bytes of a stage plan: the most memory while any node is computed."""
    return max([g.base_bytes, *(stage_peak(g, R, S, t) for t in range(g.n))])


def plan_is_valid(g: OpGraph, R: BoolMatrix, S: BoolMatrix) -> bool:
    """Whether a plan respects the stage rules (a solver's rounded output may not, e.g. CBC's
    answer after a limit): each stage computes its frontier node and nothing after it, every
    computed node finds its inputs computed earlier in the stage or kept into it, a kept value was
    computed or kept in the stage before and is not computed again, and no-recompute nodes are
    computed once."""
    n = g.n
    if R.shape != (n, n) or S.shape != (n, n) or n == 0:
        return R.shape == S.shape == (n, n)
    if not R.diagonal().all() or np.triu(R, 1).any() or np.triu(S).any() or (R & S).any():
        return False
    for i, preds in enumerate(g.preds):
        for j in preds:
            if (R[:, i] & ~(R[:, j] | S[:, j])).any():
                return False
    if (S[1:] & ~(R[:-1] | S[:-1])).any() or S[0].any():
        return False
    return not (np.tril(R, -1)[:, g.no_recompute]).any()


def plan_time(g: OpGraph, R: BoolMatrix) -> float:
    """Compute time of a stage plan."""
    return float((R * g.cost[None, :]).sum())


def keep_all_plan(g: OpGraph) -> tuple[BoolMatrix, BoolMatrix]:
    """No recomputation: keep every value from its computation until its last user's stage."""
    n = g.n
    S = np.zeros((n, n), dtype=bool)
    for i in range(n):
        last = max(g.users[i], default=i)
        S[i + 1 : last + 1, i] = True
    return optimal_r(g, S), S


def fix_no_recompute(g: OpGraph, R: BoolMatrix, S: BoolMatrix) -> tuple[BoolMatrix, BoolMatrix]:
    """Keep random ops that may not be recomputed from their stage to every later use."""
    while True:
        bad = [(t, i) for t in range(g.n) for i in range(t) if R[t, i] and g.no_recompute[i]]
        if not bad:
            return R, S
        S = S.copy()
        for t, i in bad:
            S[i + 1 : t + 1, i] = True
        R = optimal_r(g, S)


def stage_peak(g: OpGraph, R: BoolMatrix, S: BoolMatrix, t: int) -> int:
    """Peak bytes of stage t alone (base included)."""
    computed, frees, _ = _stage_events(g, R, S, t)
    mem = g.base_bytes + int(g.size[:t][S[t, :t]].sum())
    peak = mem
    for k in computed:
        mem += int(g.size[k])
        peak = max(peak, mem)
        mem -= int(sum(g.size[i] for i in frees[k]))
    return peak


def optimal_r_stage(g: OpGraph, S: BoolMatrix, t: int) -> npt.NDArray[np.bool_]:
    """Row t of `optimal_r`: it depends only on S[t] and S[t+1]."""
    n = g.n
    row = np.zeros(n, dtype=bool)
    need = np.zeros(n, dtype=bool)
    need[t] = True
    if t + 1 < n:
        need |= S[t + 1] & ~S[t]
    for v in range(t, -1, -1):
        if need[v] and not S[t, v]:
            row[v] = True
            for u in g.preds[v]:
                need[u] = True
    return row


def prune_plan(g: OpGraph, R: BoolMatrix, S: BoolMatrix) -> tuple[BoolMatrix, BoolMatrix]:
    """Drop retentions nothing uses (not read in the stage, not kept further), then take the
    cheapest R: lowers memory and time, and meets the MILP's usefulness rows (warm starts)."""
    n = g.n
    S = S.copy()
    for t in range(n - 1, 0, -1):
        read = np.zeros(n, dtype=bool)
        for k in range(t + 1):
            if R[t, k]:
                read[list(g.preds[k])] = True
        keep = S[t + 1] if t + 1 < n else np.zeros(n, dtype=bool)
        S[t] &= read | keep
        R[t - 1] = optimal_r_stage(g, S, t - 1)
    return fix_no_recompute(g, optimal_r(g, S), S)


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
    scope: str = "activations",
) -> Schedule:
    """Wrap a stage plan as a Schedule; peak and time come from the plan's own accounting (the
    simulator's for a whole-step `scope`)."""
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
        scope=scope,
    )
