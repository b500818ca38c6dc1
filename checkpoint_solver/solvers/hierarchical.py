"""``hierarchical``: op-level options per block, chosen by the chain DP (the idea of Rockmate,
Zhao et al., ICML 2023).

For a graph captured with its blocks (``graph.block``: ``prof.graph``, or
`checkpoint_solver.profiling.capture_region` with ``blocks=``) or, without them, the segments
`checkpoint_solver.solvers._segments.find_segments` cuts its forward into (about the square root
of its forward ops, of equal cost, cut where the fewest bytes cross):

1. **Stages.** Each block (and the code before and after the blocks) is one chain stage ``s``:
   its forward nodes ``F_s`` and backward nodes ``B_s``. The boundary ``a[s]`` is every forward
   value made up to stage ``s`` that a later stage reads, forward or backward: the carried
   activation and the values read further ahead (an attention mask made before the first block,
   a U-Net's skips, T5's encoder output), each in every boundary it crosses, as the chain
   profiler counts them. The chain model then counts such a value once per kept boundary; the
   expansion holds one instance, and the simulator gives the true peak.
2. **Options.** Each distinct stage's own graph is solved by an op-level solver (``greedy`` by
   default, or ``ilp``) at several budgets; each schedule's backward part (the ops from its first
   backward node on) is one *option*: which forward values it keeps from the forward (its tape,
   ``xbar``), what it recomputes, and its backward time ``ub``. The option that recomputes nothing
   is always there. Stages with the same structure (identical blocks) are solved once.
3. **Chain DP.** `dp`'s recursion (Beaumont et al. 2019) with a choice among the options in its
   chain branch: the DP picks, per block occurrence, whether to run it without tape
   (``F_n``/``F_ck``, recomputed later) or with tape under one of its options.
4. **Expansion.** The chain plan becomes one graph schedule: each chain op computes its stage's
   nodes (``B`` runs the option's backward part), nodes that may not be recomputed run only
   once, and every value is freed right after its last use. The simulator gives the schedule's
   true peak and time; the DP runs at the largest memory that keeps that peak within the budget.

With only the no-recompute option per stage this is block-level ``dp`` on the same graph
(`solve_hierarchical(..., block_level=True)`), which is how the two are compared at equal budgets
on the same costs.

Status is ``heuristic``: the DP is optimal over the options and its chain model of them, the
options come from a heuristic or time-limited solver, and the lower bound reported is the
store-all time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from checkpoint_solver.errors import (
    CheckpointSolverError,
    InfeasibleBudgetError,
    InvalidOptionError,
    InvalidProblemError,
)
from checkpoint_solver.problem import Chain, Graph, RngPolicy, Role, whole_step_chain
from checkpoint_solver.schedule import (
    Bwd,
    Compute,
    Free,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
    HostLink,
    Offload,
    OffloadValue,
    Op,
    Prefetch,
    PrefetchValue,
    Schedule,
    Status,
)
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._deadline import Deadline, check_time_limit
from checkpoint_solver.solvers._options import SolverOptions, bool_option, int_option, scope_option
from checkpoint_solver.solvers._segments import find_segments
from checkpoint_solver.solvers.baseline_plans import rule_candidates
from checkpoint_solver.solvers.dp import OptionsDP, least_memory_plan
from checkpoint_solver.solvers.offload import OffloadTable

__all__ = ["chain_schedule_on_graph", "min_budget_hierarchical", "solve_hierarchical"]


@dataclass(frozen=True)
class _Option:
    backward: tuple[int, ...]  # global node ids the backward part computes, in order
    xbar: int
    ub: float
    of: int
    ob: int


@dataclass(frozen=True)
class _Stages:
    forward: tuple[tuple[int, ...], ...]  # per stage (0-based), its forward op nodes
    backward: tuple[tuple[int, ...], ...]
    chain: Chain
    out_bytes: tuple[int, ...]  # per stage: what its tape holds beside values its backward reads
    tangents: tuple[int, ...]
    sink: tuple[int, ...]
    ends: tuple[frozenset[int], ...] = ()  # per stage k: the values of a[k + 1]


def not_a_training_graph(graph: Graph) -> str | None:
    """Why `graph` cannot be solved here (no forward or no backward op nodes), or None."""
    flags = [graph.is_backward[v] for v in graph.ops]
    if any(flags) and not all(flags):
        return None
    return "it needs a training graph: forward nodes, then backward nodes (graph.is_backward)"


def _stages(graph: Graph) -> _Stages:
    if (why := not_a_training_graph(graph)) is not None:
        raise InvalidProblemError(f"the hierarchical solver cannot solve this graph: {why}")
    block = graph.block or find_segments(graph)
    ops = graph.ops
    tangents = tuple(
        v for v in ops if graph.names[v].startswith("tangent_") and graph.rng[v] != RngPolicy.NONE
    )
    sink = tuple(v for v in ops if graph.names[v] == "sink")
    special = set(tangents) | set(sink)
    phases = sorted({block[v] for v in ops if v not in special})
    fwd: dict[int, list[int]] = {p: [] for p in phases}
    bwd: dict[int, list[int]] = {p: [] for p in phases}
    for v in ops:
        if v in special:
            continue
        (bwd if graph.is_backward[v] else fwd)[block[v]].append(v)
    phases = [p for p in phases if fwd[p]]
    for p in list(bwd):
        if p not in phases and bwd[p]:
            # Backward nodes of a phase without forward nodes (e.g. gradient accumulation of
            # parameters used before the first block) join the nearest earlier stage.
            earlier = [q for q in phases if q < p] or phases[:1]
            bwd[earlier[-1]].extend(bwd[p])
    stage_of = {v: k for k, p in enumerate(phases) for v in fwd[p]}
    n = len(phases)
    # ends[e]: every forward value made in stages <= e that a later stage reads, forward or
    # backward (the boundary after stage e, x[e + 1]): the carried activation, skips, masks, the
    # encoder output; a value read k stages ahead is in each of the k boundaries it crosses.
    ends: list[set[int]] = [set() for _ in range(n)]
    for k, p in enumerate(phases):
        for v in (*fwd[p], *bwd[p]):
            for u in graph.preds[v]:
                if graph.role[u] != Role.OP or graph.is_backward[u]:
                    continue
                su = stage_of.get(u)
                if su is None or (su > k and not graph.is_backward[v]):
                    raise InvalidProblemError(
                        f"node {v} ({graph.names[v]}) of stage {k} reads node {u}, which is not "
                        f"a forward node of this or an earlier stage"
                    )
                for e in range(su, k):
                    ends[e].add(u)
    outputs = {u for t in tangents for u in graph.preds[t]}
    for u in outputs:
        for e in range(stage_of[u], n):
            ends[e].add(u)
    x = [0] + [sum(graph.out_bytes[u] for u in end) for end in ends]
    forward = tuple(tuple(sorted(fwd[p])) for p in phases)
    backward = tuple(tuple(sorted(bwd[p])) for p in phases)
    uf = [sum(graph.cost[v] for v in f) for f in forward]
    ub = [sum(graph.cost[v] for v in b) for b in backward]
    tape = [_tape_nodes(graph, forward[k], backward[k]) for k in range(n)]
    extra = [sum(graph.out_bytes[v] for v in ends[k] - tape[k]) for k in range(n)]
    xbar = [sum(graph.out_bytes[v] for v in tape[k]) + extra[k] for k in range(n)]
    # Forward transients as the chain rules count them: the stage's forward run alone, each of
    # its values freed after its last forward reader unless the boundary (and, taped, the
    # tape) keeps it; above the output (F_n, F_ck) or the tape (F_all).
    ofn = [_forward_peak(graph, forward[k], ends[k]) - x[k + 1] for k in range(n)]
    of = [_forward_peak(graph, forward[k], ends[k] | tape[k]) - xbar[k] for k in range(n)]
    chain = Chain(
        uf=tuple(uf),
        ub=tuple(ub),
        x=tuple(x),
        xbar=tuple(xbar),
        of=tuple(max(v, -xbar[k]) for k, v in enumerate(of)),
        ofn=tuple(max(v, -x[k + 1]) for k, v in enumerate(ofn)),
        ob=(0,) * n,
        cost_unit=graph.cost_unit,
        name=f"stages of {graph.name}",
    )
    return _Stages(
        forward, backward, chain, tuple(extra), tangents, sink, tuple(frozenset(e) for e in ends)
    )


def _run_alone(
    graph: Graph, nodes: Sequence[int], live: set[int], kept: set[int]
) -> tuple[int, int]:
    """`nodes` run in order from the values `live` holds, each value freed after its last reader
    among them unless it is in `kept`: the bytes live at the start and the peak."""
    last: dict[int, int] = {}
    for i, v in enumerate(nodes):
        for u in graph.preds[v]:
            last[u] = i
    live = set(live)
    mem = base = sum(graph.out_bytes[u] for u in live)
    peak = mem
    for i, v in enumerate(nodes):
        mem += graph.out_bytes[v]
        live.add(v)
        peak = max(peak, mem)
        for u in list(live):
            if u not in kept and last.get(u, -1) <= i:
                live.discard(u)
                mem -= graph.out_bytes[u]
    return base, peak


def _forward_peak(graph: Graph, forward: Sequence[int], kept: set[int]) -> int:
    """Peak bytes of the values a stage's forward makes, run alone, each freed after its last
    reader among those nodes unless it is in `kept`."""
    return _run_alone(graph, forward, set(), kept)[1]


def _tape_nodes(graph: Graph, forward: Sequence[int], backward: Sequence[int]) -> set[int]:
    """Forward nodes of a stage its backward reads (what storing everything keeps)."""
    fset = set(forward)
    return {u for v in backward for u in graph.preds[v] if u in fset}


def _signature(graph: Graph, forward: Sequence[int], backward: Sequence[int]) -> tuple[object, ...]:
    nodes = [*forward, *backward]
    local = {v: i for i, v in enumerate(nodes)}
    sig: list[object] = []
    for v in nodes:
        preds = tuple(
            sorted(
                local[u] if u in local else -1 - (graph.role[u] != Role.OP) for u in graph.preds[v]
            )
        )
        sig.append((graph.out_bytes[v], graph.rng[v], graph.is_backward[v], preds))
    return tuple(sig)


def _local_graph(
    graph: Graph, forward: Sequence[int], backward: Sequence[int]
) -> tuple[Graph, list[int]]:
    """The stage's own graph: its nodes plus what they read from outside as inputs."""
    inside = [*forward, *backward]
    inside_set = set(inside)
    outside = sorted({u for v in inside for u in graph.preds[v] if u not in inside_set})
    keep = sorted(outside + inside)
    new = {v: i for i, v in enumerate(keep)}
    out_set = set(outside)
    g = Graph(
        names=tuple(graph.names[v] for v in keep),
        cost=tuple(0.0 if v in out_set else graph.cost[v] for v in keep),
        out_bytes=tuple(graph.out_bytes[v] for v in keep),
        is_backward=tuple(graph.is_backward[v] for v in keep),
        edges=tuple((new[u], new[v]) for v in inside for u in graph.preds[v] if u in new),
        rng=tuple(RngPolicy.NONE if v in out_set else graph.rng[v] for v in keep),
        role=tuple(Role.INPUT if v in out_set else Role.OP for v in keep),
        cost_unit=graph.cost_unit,
    )
    return g, keep


def _options(
    graph: Graph,
    forward: Sequence[int],
    backward: Sequence[int],
    *,
    budgets: int,
    solver: str,
    deadline: Deadline,
) -> list[tuple[int, ...]]:
    """Backward parts (global ids) of the stage solved at `budgets` budgets (while `deadline`
    leaves time: the options' solves share it); the first recomputes nothing."""
    from checkpoint_solver.solvers import min_budget, solve

    store_all = (tuple(backward),)
    if not backward or budgets <= 1:
        return list(store_all)
    local, ids = _local_graph(graph, forward, backward)
    high = min_budget(local, solver="store_all")  # the store-all schedule's peak
    try:
        low = _about_least(local, high)
    except CheckpointSolverError:
        return list(store_all)
    parts = {store_all[0]}
    out = list(store_all)
    bset = set(backward)
    for k in range(budgets - 1):
        if deadline.expired():
            break
        b = low + (high - low) * k // max(budgets - 1, 1)
        options: dict[str, Any] = (
            {"time_limit": deadline.left()} if solver in ("ilp", "ilp-rounding") else {}
        )
        try:
            sched = solve(local, max(b, 1), solver=solver, **options)
        except InfeasibleBudgetError:
            continue
        computes = [ids[op.node] for op in sched.ops if isinstance(op, Compute)]
        first = next((i for i, v in enumerate(computes) if v in bset), len(computes))
        part = tuple(computes[first:])
        if part not in parts:
            parts.add(part)
            out.append(part)
    return out


def _about_least(local: Graph, high: int) -> int:
    """About the greedy's least budget for `local` (within 10 %, from above): where the options'
    budgets start. The exact bisection (`min_budget_greedy`) costs five times as many greedy runs
    and the options do not need it."""
    from checkpoint_solver.solvers._heuristics import greedy_plan
    from checkpoint_solver.solvers.graph_greedy import op_graph_orders

    orders = [g for g, _ in op_graph_orders(local)]
    lo = min(g.base_bytes for g in orders)
    hi = high
    while hi - lo > max(1, hi // 10):
        mid = (lo + hi) // 2
        if any(greedy_plan(g, mid) is not None for g in orders):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _option_costs(
    graph: Graph, forward: Sequence[int], part: Sequence[int], boundary_out: int, x_in: int
) -> _Option:
    """Chain parameters of one option: tape bytes, backward time, transient overheads."""
    fset = set(forward)
    recomputed: set[int] = set()
    kept: set[int] = set()
    for v in part:
        for u in graph.preds[v]:
            if u in fset and u not in recomputed:
                kept.add(u)
        if v in fset:
            recomputed.add(v)
    xbar = sum(graph.out_bytes[v] for v in kept) + boundary_out
    ub = math.fsum(graph.cost[v] for v in part)
    # Backward transient, as the chain rule for B counts it (the peak above the tape, the held
    # gradient and the input's gradient): the part run from its tape and the gradients reaching
    # it, each value freed after its last use unless something outside the part reads it too
    # (the tape frees as the backward goes, which the rule's xbar does not see).
    pset = set(part)
    incoming = {
        u
        for v in part
        for u in graph.preds[v]
        if u not in pset and u not in fset and graph.is_backward[u] and graph.role[u] == Role.OP
    }
    # (The stage's own forward nodes that the part does not rerun have read theirs already.)
    outside = {
        u
        for u in (*kept, *incoming, *part)
        if any(w not in pset and w not in fset for w in graph.succs[u])
    }
    base, peak = _run_alone(graph, part, set(kept) | incoming, outside)
    return _Option(tuple(part), xbar, ub, 0, max(-x_in, peak - base - x_in))


@dataclass(frozen=True)
class _Plan:
    stages: _Stages
    options: list[list[_Option]]
    solved: int  # distinct stage graphs solved for options


def _plan(
    graph: Graph, *, block_level: bool, option_budgets: int, option_solver: str, time_limit: float
) -> _Plan:
    st = _stages(graph)
    n = st.chain.length
    deadline = Deadline(time_limit)
    cache: dict[tuple[object, ...], tuple[list[tuple[int, ...]], tuple[int, ...]]] = {}
    options: list[list[_Option]] = []
    for k in range(n):
        f, b = st.forward[k], st.backward[k]
        if block_level:
            parts = [tuple(b)]
        else:
            sig = _signature(graph, f, b)
            if sig in cache:
                base_parts, base_nodes = cache[sig]
                index = {v: i for i, v in enumerate(base_nodes)}
                mine = [*f, *b]
                parts = [tuple(mine[index[v]] for v in p) for p in base_parts]
            else:
                parts = _options(
                    graph, f, b, budgets=option_budgets, solver=option_solver, deadline=deadline
                )
                cache[sig] = (parts, tuple([*f, *b]))
        opts = [_option_costs(graph, f, p, st.out_bytes[k], st.chain.x[k]) for p in parts]
        options.append(opts)
    # The stage chain's own B costs are the no-recompute option's (each stage's first): what the
    # DP's minimum-memory plan (`_Curve.least`) is computed with.
    chain = dataclasses.replace(st.chain, ob=tuple(opts[0].ob for opts in options))
    return _Plan(dataclasses.replace(st, chain=chain), options, len(cache))


def _raw_options(plan: _Plan) -> list[list[tuple[int, float, int, int]]]:
    return [[(o.xbar, o.ub, o.of, o.ob) for o in opts] for opts in plan.options]


def _expand(graph: Graph, plan: _Plan, chain_ops: list[Op], picks: dict[int, int]) -> list[Op]:
    """The graph schedule of a chain plan (`picks`: each taped stage's option): computes per
    chain op, frees after last use. A chain plan's ``offload(a[j])`` and ``prefetch(a[j])``
    (`checkpoint_solver.solvers.offload`) become ``offload(v)`` and ``prefetch(v)`` of each value
    ``v`` of ``a[j]`` that nothing reads between them but the first chain op after the offload
    (the others stay on the device)."""
    # Long: one pass builds the node sequence with the copies' marks, one decides which values
    # move, one places the frees; they share the sequence and its instance bookkeeping.
    st = plan.stages
    n = st.chain.length
    seq: list[tuple[str, int]] = []  # ("c", node) | ("off", j) | ("pre", j)
    done: set[int] = set()
    first_op_end: dict[int, int] = {}  # an offload mark's position -> end of the op beside it
    pending_marks: list[int] = []
    for op in chain_ops:
        if isinstance(op, (Offload, Prefetch)):
            seq.append(("off" if isinstance(op, Offload) else "pre", op.index))
            if isinstance(op, Offload):
                pending_marks.append(len(seq) - 1)
            continue
        if isinstance(op, Bwd):
            nodes = [
                *(st.tangents if op.stage == n else ()),
                *plan.options[op.stage - 1][picks[op.stage]].backward,
            ]
        else:
            assert isinstance(op, (FwdNoTape, FwdCheckpoint, FwdTape))
            nodes = list(st.forward[op.stage - 1])
        for v in nodes:
            if graph.rng[v] == RngPolicy.FORBID_RECOMPUTE:
                if v in done:
                    continue
                done.add(v)
            seq.append(("c", v))
        for mark in pending_marks:
            first_op_end[mark] = len(seq) - 1
        pending_marks = []
    seq.extend(("c", v) for v in st.sink)
    copies = any(kind != "c" for kind, _ in seq)
    moves = _moves(graph, st, seq, first_op_end) if copies else {}
    events: list[tuple[str, int]] = []
    at: list[int] = []  # per seq position, its last event's index
    holds: list[tuple[int, int]] = []  # (offload event, seq position its copy runs until)
    for i, (kind, v) in enumerate(seq):
        if kind == "c":
            events.append(("c", v))
        else:
            for u in moves.get(i, ()):
                events.append((kind, u))
                if kind == "off":
                    holds.append((len(events) - 1, first_op_end.get(i, i)))
        at.append(len(events) - 1)
    hold_until = {e: at[p] for e, p in holds}
    # Each compute or prefetch starts an instance that lasts until the next one of the node.
    last_use: dict[tuple[int, int], int] = {}
    current: dict[int, int] = {}
    for i, (kind, v) in enumerate(events):
        if kind == "c":
            for u in graph.preds[v]:
                if graph.role[u] == Role.OP:
                    key = (u, current[u])
                    last_use[key] = max(last_use.get(key, i), i)
            current[v] = i
        elif kind == "off":
            # The device copy stays through the op beside the copy, which hides it.
            key = (v, current[v])
            last_use[key] = max(last_use.get(key, i), hold_until.get(i, i))
        else:
            current[v] = i
    frees_at: dict[int, list[int]] = {}
    for i, (kind, v) in enumerate(events):
        if kind in ("c", "pre"):
            end = last_use.get((v, i), i)
            frees_at.setdefault(end, []).append(v)
    ops: list[Op] = []
    for i, (kind, v) in enumerate(events):
        ops.append(
            Compute(v) if kind == "c" else OffloadValue(v) if kind == "off" else PrefetchValue(v)
        )
        for u in frees_at.get(i, []):
            ops.append(Free(u))
    return ops


def _moves(
    graph: Graph, st: _Stages, seq: list[tuple[str, int]], first_op_end: dict[int, int]
) -> dict[int, list[int]]:
    """Per copy mark in `seq`, the values it moves: for an ``offload(a[j])`` at position i and
    its ``prefetch(a[j])`` at q, each value of ``a[j]`` computed before i, not computed again
    before q, read after q, and read in between only up to the end of the op beside the
    offload."""
    reads: dict[int, list[int]] = {}
    computed: dict[int, list[int]] = {}
    for i, (kind, v) in enumerate(seq):
        if kind == "c":
            computed.setdefault(v, []).append(i)
            for u in graph.preds[v]:
                reads.setdefault(u, []).append(i)
    out: dict[int, list[int]] = {}
    for i, (kind, j) in enumerate(seq):
        if kind != "off":
            continue
        q = next((k for k in range(i + 1, len(seq)) if seq[k] == ("pre", j)), None)
        if q is None:
            continue
        beside = first_op_end.get(i, i)
        moved = []
        for u in sorted(st.ends[j - 1]) if 1 <= j <= len(st.ends) else []:
            made = [c for c in computed.get(u, []) if c < i]
            again = [c for c in computed.get(u, []) if i < c < q]
            between = [r for r in reads.get(u, []) if beside < r < q]
            after = [r for r in reads.get(u, []) if r > q]
            if made and not again and not between and after:
                moved.append(u)
        out[i] = moved
        out[q] = moved
    return out


@dataclass(frozen=True)
class HierarchicalOptions(SolverOptions):
    """``hierarchical``'s options (see `solve_hierarchical`)."""

    option_budgets: int = 5
    option_solver: str = "greedy"
    time_limit: float = 5.0
    mem_slots: int = 2000
    block_level: bool = False
    scope: str = "activations"
    link: HostLink | None = None

    def check(self) -> None:
        if self.link is not None and not isinstance(self.link, HostLink):
            raise InvalidOptionError(
                f"link={self.link!r}: give a HostLink (e.g. cs.HostLink.gbps(25)) to let the "
                f"blocks' boundaries move to host memory, or None"
            )
        int_option("option_budgets", self.option_budgets)
        if not isinstance(self.option_solver, str) or self.option_solver not in (
            "greedy",
            "ilp",
            "ilp-rounding",
        ):
            raise InvalidOptionError(
                f"option_solver={self.option_solver!r}; use greedy (fast), ilp or ilp-rounding"
            )
        check_time_limit(self.time_limit, allow_none=False)
        if self.time_limit == 0:
            raise InvalidOptionError("time_limit=0 leaves the options no time; give seconds > 0")
        int_option("mem_slots", self.mem_slots)
        bool_option("block_level", self.block_level)
        scope_option(self.scope)


@functools.lru_cache(maxsize=4)
def _curves(
    graph: Graph,
    *,
    block_level: bool,
    option_budgets: int,
    option_solver: str,
    time_limit: float,
    mem_slots: int,
    scope: str = "activations",
) -> list[_Curve]:
    """The DP curves to choose from: the options' and, unless `block_level`, block-level's too.
    Block-level plans are in the options' DP space, but the expansion's peak check can push that
    DP to a smaller memory than block-level needs, so both are kept and the better one wins.
    Kept for the last graphs asked about: `min_budget` and `solve` at several budgets share them
    (the options are most of the time)."""
    levels = [True] if block_level else [False, True]
    plans = [
        _plan(
            graph,
            block_level=level,
            option_budgets=option_budgets,
            option_solver=option_solver,
            time_limit=time_limit,
        )
        for level in levels
    ]
    # Both plans have the same stages and the same no-recompute option: one set of rule plans.
    rules = _rule_plans(graph, plans[-1], scope)
    return [_Curve(graph, plan, mem_slots, scope, rules) for plan in plans]


def _rule_plans(graph: Graph, plan: _Plan, scope: str) -> list[tuple[list[Op], int, float]]:
    """Torch's rules' chain plans (`baseline_plans.rule_candidates`: per-block and
    checkpoint_sequential over the stages) and the plan that reruns from the input
    (`_from_the_input`), expanded without recomputation inside a stage, each with its simulated
    peak and time: what a user reaches for by hand, and the least-memory extreme."""
    n = plan.stages.chain.length
    out = []
    for chain_ops in [*rule_candidates(n), _from_the_input(n)]:
        ops = _expand(graph, plan, chain_ops, dict.fromkeys(range(1, n + 1), 0))
        rep = simulate_ops(graph, ops, scope=scope)
        if rep.valid:
            out.append((ops, rep.peak_bytes, rep.compute_time))
    return out


def _from_the_input(n: int) -> list[Op]:
    """The chain plan that keeps no boundary but the input: each stage's backward reruns the
    forward from the start (quadratic time, Revolve with one snapshot). Its expanded peak is
    often the least there is where values cross many boundaries (an RNN's collected outputs),
    which the DP's minimum-memory recursion, counting them once per boundary, does not see."""
    ops: list[Op] = []
    for t in range(n, 0, -1):
        if t > 1:
            ops.append(FwdCheckpoint(1))
            ops.extend(FwdNoTape(s) for s in range(2, t))
        ops.extend([FwdTape(t), Bwd(t)])
    return ops


class _Curve:
    """The DP table for the graph's store-all peak and the expanded schedule at each slot count."""

    def __init__(
        self,
        graph: Graph,
        plan: _Plan,
        mem_slots: int,
        scope: str,
        rules: list[tuple[list[Op], int, float]],
    ) -> None:
        self.graph = graph
        self.plan = plan
        self.scope = scope
        self.cut = False  # `_best_under` stopped its refinement at the deadline
        self.rules = rules  # `_rule_plans`: weighed beside the DP's plans
        # No schedule needs more than every node at once; the chain model may think it does (a
        # value in several boundaries counts once per boundary), so its boundaries are added.
        top = sum(graph.out_bytes[v] for v in graph.ops) + sum(plan.stages.chain.x)
        chain, raw = plan.stages.chain, _raw_options(plan)
        if scope == "step":
            # The whole step: the stages' chain with the model states, each stage's gradients
            # those its backward nodes make, so the DP counts them as `dp` does on a chain;
            # every option's backward counts them as the stage's own backward does.
            st = graph.states
            assert st is not None
            stage_of = {v: k for k, b in enumerate(plan.stages.backward) for v in b}
            grads = [sum(st.grads[v] for v in b) for b in plan.stages.backward]
            for first, _, nbytes in st.windows:
                # A shared gradient's second copy: kept to the end in the DP's model (more than
                # it needs; the simulator judges the expanded plan exactly).
                if first in stage_of:
                    grads[stage_of[first]] += nbytes
            staged = dataclasses.replace(
                chain,
                states=dataclasses.replace(
                    st, grads=tuple(grads), grad_extra=(), grads_done=(), windows=()
                ),
            )
            whole = whole_step_chain(staged)
            shift = [w - o for w, o in zip(whole.ob, chain.ob, strict=True)]
            raw = [
                [(xb, tb, fo, bo + shift[k]) for xb, tb, fo, bo in opts]
                for k, opts in enumerate(raw)
            ]
            chain = whole
            top += st.fixed_bytes + st.grad_bytes + st.step
        self.unit = max(1, math.ceil(top / mem_slots))
        self.mmax = top // self.unit
        self.chain, self.raw = chain, raw  # what the DP table was built on
        self.dp = OptionsDP.build(chain, self.unit, self.mmax, raw)
        self.cache: dict[int, tuple[list[Op], int, float] | None] = {}
        self.first = self.dp.first

    @functools.cached_property
    def least(self) -> tuple[list[Op], int, float] | None:
        """The least-memory expanded plan of the DP's exact minimum-memory recursion
        (`dp.least_memory_plan` on the stages' chain, which the slot grid can miss): the block-level
        plan that `dp`'s minimum is (every taped stage without recomputation), and the same
        recursion choosing, per taped stage, its option of least memory."""
        found = [r for r in (self._least_with(None), self._least_with(self.raw)) if r is not None]
        return min(found, key=lambda r: (r[1], r[2])) if found else None

    def _least_with(
        self, options: list[list[tuple[int, float, int, int]]] | None
    ) -> tuple[list[Op], int, float] | None:
        chain_ops, picks = least_memory_plan(self.chain, options)
        ops = _expand(self.graph, self.plan, chain_ops, picks)
        rep = simulate_ops(self.graph, ops, scope=self.scope)
        return (ops, rep.peak_bytes, rep.compute_time) if rep.valid else None

    def at(self, m: int) -> tuple[list[Op], int, float] | None:
        if m in self.cache:
            return self.cache[m]
        result = None
        if self.first is not None and m >= self.first:
            chain_ops, picks = self.dp.plan(m)
            ops = _expand(self.graph, self.plan, chain_ops, picks)
            rep = simulate_ops(self.graph, ops, scope=self.scope)
            if rep.valid:
                result = (ops, rep.peak_bytes, rep.compute_time)
        self.cache[m] = result
        return result


# `_best_under`'s slot count for a plan that is not the DP's at some slot count (OFFLOADED:
# the offload recursion's, `_best_offload`).
LEAST, RULE, OFFLOADED = -1, -2, -3
# `_best_under`'s search: a grid of GRID points over the DP's memory axis, then about ZONE
# slot counts around the grid's points whose peak is within NEAR of the budget.
GRID, ZONE, NEAR = 64, 256, 0.15


def _best_under(
    curve: _Curve, budget: int, deadline: Deadline | None = None
) -> tuple[list[Op], int, float, int] | None:
    """The fastest expanded schedule within `budget` over the slot counts the DP can use (the
    refinement around the grid stops when `deadline` has passed)."""
    if curve.first is None:
        return None
    best: tuple[list[Op], int, float, int] | None = None

    def consider(m: int) -> None:
        nonlocal best
        r = curve.at(m)
        if r is not None and r[1] <= budget and (best is None or r[2] < best[2]):
            best = (r[0], r[1], r[2], m)

    # The chain model counts a value crossing several cuts once per kept boundary, so the DP's
    # plans at more slots than the budget holds may still fit once expanded, and the expanded
    # peak is not monotone in m: above the first slot count that misses the budget, plans that
    # fit and plans a little over it interleave slot by slot (a U-Net: misses at 262 to 291,
    # fits at 293 to 302, misses again up to 320). The DP's time falls as m grows. So a grid
    # over the whole axis is tried, then every slot count within a step of a grid point at or
    # above its first miss whose peak is within NEAR of the budget (up to ZONE of them, lowest
    # first).
    lo, hi = curve.first, curve.mmax
    step = max(1, math.ceil((hi - lo) / GRID))
    grid = list(range(lo, hi + 1, step))
    for m in grid:
        consider(m)
    for m in _samples(curve):  # `_min_peak`'s points: a budget at the minimum is solved
        consider(m)
    missed = [m for m in grid if (r := curve.cache[m]) is None or r[1] > budget]
    if missed:
        zone: set[int] = set()
        for g in grid:
            r = curve.cache[g]
            if g < missed[0] - step or r is None or r[1] > budget * (1 + NEAR):
                continue
            zone.update(range(max(lo, g - step + 1), min(hi, g + step - 1) + 1))
            if len(zone) >= ZONE:
                break
        for m in sorted(zone):
            if deadline is not None and deadline.expired():
                curve.cut = True
                break
            consider(m)
    least = curve.least
    if least is not None and least[1] <= budget and (best is None or least[2] < best[2]):
        best = (least[0], least[1], least[2], LEAST)
    for ops, peak, compute_time in curve.rules:
        if peak <= budget and (best is None or compute_time < best[2]):
            best = (ops, peak, compute_time, RULE)
    return best


# Slots of the offload recursion's memory axis, and the slot counts tried on it.
OFFLOAD_SLOTS, OFFLOAD_GRID = 400, 96


def _best_offload(
    graph: Graph,
    curves: list[_Curve],
    budget: int,
    scope: str,
    link: HostLink,
    to_beat: float,
) -> tuple[list[Op], int, float, _Curve] | None:
    """The fastest expanded offload plan within `budget` (step time: compute plus waits),
    if it beats `to_beat`; over a grid of the recursion's memory axis, as `_best_under`."""
    best: tuple[list[Op], int, float, _Curve] | None = None
    for curve in curves:
        top = curve.mmax * curve.unit
        unit = max(1, math.ceil(top / OFFLOAD_SLOTS))
        table = OffloadTable(curve.chain, link, unit, top // unit, curve.raw)
        if table.first is None:
            continue
        hi = top // unit
        for m in sorted({int(v) for v in np.linspace(table.first, hi, OFFLOAD_GRID)}):
            got = table.plan(m)
            if got is None:
                continue
            chain_ops, picks = got
            if not any(isinstance(op, Offload) for op in chain_ops):
                continue
            ops = _expand(graph, curve.plan, chain_ops, picks)
            rep = simulate_ops(graph, ops, scope=scope, link=link)
            if not rep.valid or rep.peak_bytes > budget:
                continue
            if rep.step_time < to_beat * (1 - 1e-12) and (best is None or rep.step_time < best[2]):
                best = (ops, rep.peak_bytes, rep.step_time, curve)
    if best is None:
        return None
    ops, peak, _, curve = best
    return ops, peak, simulate_ops(graph, ops, scope=scope, link=link).compute_time, curve


def _samples(curve: _Curve) -> list[int]:
    """The slot counts `_min_peak` looks at (48 over the DP's memory axis)."""
    if curve.first is None:
        return []
    return [int(m) for m in np.unique(np.linspace(curve.first, curve.mmax, 48).astype(int))]


def _min_peak(curves: list[_Curve]) -> int | None:
    """The smallest expanded peak over the curves (each sampled at 48 slot counts)."""
    peaks = []
    for curve in curves:
        for m in _samples(curve):
            r = curve.at(m)
            if r is not None:
                peaks.append(r[1])
        if curve.least is not None:
            peaks.append(curve.least[1])
        peaks.extend(r[1] for r in curve.rules)
    return min(peaks) if peaks else None


def _note(
    plan: _Plan,
    curves: list[_Curve],
    curve: _Curve,
    m: int,
    options_s: float,
    block_level: bool,
    option_solver: str,
    option_budgets: int,
) -> str:
    """What `solve_hierarchical` chose, for the schedule's notes."""
    if block_level:
        picked = "block-level"
    else:
        picked = "options" if curve is curves[0] else "block-level (faster here)"
    n_opts = [len(o) for o in plan.options]
    levels = (
        "no-recompute only: block-level dp"
        if block_level
        else f"{option_solver} at {option_budgets} budgets"
    )
    return (
        f"{plan.stages.chain.length} stages; options per stage {n_opts} ({levels}); "
        f"{curves[0].plan.solved} distinct stage graphs solved for options, DP tables built in "
        f"{options_s:.2f} s; "
        + (
            "the DP's minimum-memory plan"
            if m == LEAST
            else "a fixed plan (per-block, checkpoint_sequential, or rerun from the input)"
            if m == RULE
            else "the offload recursion's plan"
            if m == OFFLOADED
            else f"DP at {m} slots of {curve.unit} bytes"
        )
        + f"; plan used: {picked}"
    )


def solve_hierarchical(
    graph: Graph,
    budget_bytes: int,
    /,
    *,
    option_budgets: int = 5,
    option_solver: str = "greedy",
    time_limit: float = 5.0,
    mem_slots: int = 2000,
    block_level: bool = False,
    scope: str = "activations",
    link: HostLink | None = None,
) -> Schedule:
    """Chain DP over per-block op-level options (see the module docstring).

    Parameters
    ----------
    option_budgets : int
        Budgets at which each distinct block's graph is solved for options (plus no recompute).
    option_solver : {"greedy", "ilp", "ilp-rounding"}
        The op-level solver for the options.
    time_limit : float
        Seconds the options' solves share (``ilp`` and ``ilp-rounding`` get what is left; no
        option is solved after it); the search over the DP's slot counts then gets as much
        again (its grid always runs; the refinement around it stops, and the note says so), so
        the whole solve takes at most about twice this.
    mem_slots : int
        The chain DP's memory discretisation.
    block_level : bool
        Only the no-recompute option: block-level ``dp`` on the same graph and costs.
    scope : {"activations", "step"}
        ``"step"`` (set by `checkpoint_solver.solve` for a graph with `Graph.states`): the
        budget covers the whole step, and the DP counts each stage's parameter gradients from
        its backward on, as `dp` does on a chain (`checkpoint_solver.problem.states`).
    link : HostLink, optional
        Also let block boundaries move to host memory over this link: the offload recursion
        (`checkpoint_solver.solvers.offload`) over the same options, expanded with
        ``offload(v)``/``prefetch(v)`` of the boundaries' values, weighed by step time (compute
        plus waits for copies) beside the plans without copies.

    Raises
    ------
    InfeasibleBudgetError
        When no expanded plan fits; carries the smallest peak found.
    InvalidProblemError
        When the graph has no forward or no backward nodes, or is not a chain of blocks.
    """
    HierarchicalOptions(
        option_budgets=option_budgets,
        option_solver=option_solver,
        time_limit=time_limit,
        mem_slots=mem_slots,
        block_level=block_level,
        scope=scope,
        link=link,
    )
    start = time.perf_counter()
    curves = _curves(
        graph,
        block_level=block_level,
        option_budgets=option_budgets,
        option_solver=option_solver,
        time_limit=time_limit,
        mem_slots=mem_slots,
        scope=scope,
    )
    options_s = time.perf_counter() - start
    # The slot search gets time_limit of its own: its grid always runs, its refinement stops.
    deadline = Deadline(time_limit)
    found = [(b, c) for c in curves if (b := _best_under(c, budget_bytes, deadline)) is not None]
    if not found:
        raise InfeasibleBudgetError(budget_bytes, _min_peak(curves), "hierarchical")
    best, curve = min(found, key=lambda bc: bc[0][2])  # the first (options) on a tie
    plan = curve.plan
    ops, peak, compute_time, m = best
    moved = None
    if link is not None:
        moved = _best_offload(graph, curves, budget_bytes, scope, link, compute_time)
        if moved is not None:
            ops, peak, compute_time, curve = moved
            plan, m = curve.plan, OFFLOADED
    note = _note(plan, curves, curve, m, options_s, block_level, option_solver, option_budgets)
    if any(c.cut for c in curves):
        note += (
            f"; time_limit={time_limit} s ran out: the slot search kept its grid and stopped "
            f"refining around it"
        )
    if link is not None:
        count = sum(isinstance(op, OffloadValue) for op in ops)
        note += "; offload: " + (
            f"{count} values moved to host memory"
            if moved is not None
            else "no plan with copies was faster"
        )
    return make_schedule(
        graph,
        budget_bytes,
        ops,
        solver="hierarchical",
        peak_bytes=peak,
        compute_time=compute_time,
        options={
            "option_budgets": option_budgets,
            "option_solver": option_solver,
            "mem_slots": mem_slots,
            "block_level": block_level,
        },
        status=Status.HEURISTIC,
        gap=None,
        lower_bound=graph.store_all_time,
        notes=note,
        scope=scope,
        link=link,
    )


def min_budget_hierarchical(
    graph: Graph,
    /,
    *,
    option_budgets: int = 5,
    option_solver: str = "greedy",
    time_limit: float = 5.0,
    mem_slots: int = 2000,
    block_level: bool = False,
    scope: str = "activations",
    link: HostLink | None = None,
) -> int:
    """The smallest expanded peak over the DP's plans (sampled over its memory axis), in
    `scope` (see `solve_hierarchical`); with a `link`, the plans without copies' (at it,
    `solve_hierarchical` always finds one)."""
    HierarchicalOptions(
        option_budgets=option_budgets,
        option_solver=option_solver,
        time_limit=time_limit,
        mem_slots=mem_slots,
        block_level=block_level,
        scope=scope,
        link=link,
    )
    curves = _curves(
        graph,
        block_level=block_level,
        option_budgets=option_budgets,
        option_solver=option_solver,
        time_limit=time_limit,
        mem_slots=mem_slots,
        scope=scope,
    )
    peak = _min_peak(curves)
    if peak is None:
        raise InvalidProblemError("the hierarchical DP found no plan for this graph")
    return peak


def chain_schedule_on_graph(
    graph: Graph, schedule: Schedule, /, *, scope: str = "activations"
) -> Schedule:
    """A chain schedule's plan as a graph schedule on `graph` (its stages are the chain's: the
    same blocks, e.g. ``prof.graph`` and ``prof.chain``): each chain op computes its stage's
    nodes without recomputation inside a stage, every value freed after its last use, peak and
    time from the simulator on the graph's own costs. This is how a chain solver's plan and
    `hierarchical`'s are compared on equal terms: the chain's and the graph's costs are measured
    separately (a stage's time against the sum of its ops'), so their predicted overheads differ
    by measurement noise even for one plan. An offload plan's copies of a boundary become copies
    of its values (those nothing reads while they are on the host) over the schedule's link. The
    schedule keeps `schedule`'s budget, which the
    plan may exceed on the graph's costs: compare ``predicted.peak_bytes`` with the budget before
    using it (`simulate` reports it invalid then).

    Raises
    ------
    InvalidProblemError
        When the schedule is not a chain schedule, or its chain has another number of stages.
    """
    if schedule.kind != "chain":
        raise InvalidProblemError(f"expected a chain schedule, got a {schedule.kind} schedule")
    plan = _plan(graph, block_level=True, option_budgets=1, option_solver="greedy", time_limit=1.0)
    n = plan.stages.chain.length
    if schedule.size != n:
        raise InvalidProblemError(
            f"the schedule is for a chain of {schedule.size} stages; this graph has {n} stages "
            f"(solve the chain profiled with it, e.g. prof.chain for prof.graph)"
        )
    ops = _expand(graph, plan, list(schedule.ops), dict.fromkeys(range(1, n + 1), 0))
    rep = simulate_ops(graph, ops, scope=scope, link=schedule.link)
    if not rep.valid:
        raise InvalidProblemError(f"the expanded plan is not valid on this graph: {rep.violation}")
    return make_schedule(
        graph,
        schedule.budget_bytes,
        ops,
        solver=schedule.solver,
        peak_bytes=rep.peak_bytes,
        compute_time=rep.compute_time,
        options=schedule.options,
        status=Status.HEURISTIC,
        lower_bound=graph.store_all_time,
        notes=f"{schedule.solver}'s chain plan expanded onto the graph's {n} stages",
        scope=scope,
        link=schedule.link,
    )
