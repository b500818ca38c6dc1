"""The nearest two-level schedule: what torch's own checkpointing can run of a graph schedule.

``torch.utils.checkpoint`` with a selective-checkpoint policy expresses two levels of decision:
per block, checkpointed or not; inside a checkpointed block, per op, save (``MUST_SAVE``: the
forward's output is cached until the rerun) or recompute. Its semantics, which `two_level_ops`
writes as a graph schedule so that the one simulator predicts its peak and time:

- The forward runs every node once, in order. A value of a block that is not checkpointed lives
  as autograd keeps it: until its last reader, forward or backward.
- In a checkpointed block, only the saved values and what later blocks read outlive the block's
  forward; the block's inputs are held by the checkpoint until its backward is done.
- The first backward node that reads a value of a checkpointed block triggers its rerun: every
  forward node of the block that is not saved, in order, up to the last one the backward needs
  (saved or not: a saved value is handed to autograd when the rerun reaches its op) and the first
  op reading it (torch's early stop comes once that op has packed it for
  autograd; its output is made, then dropped), computed at once. Each value is then freed after
  its last reader.

`nearest_two_level` derives the decisions from any graph schedule (``hierarchical``'s, or a chain
plan expanded with `chain_schedule_on_graph`): a block is checkpointed when the schedule
recomputes a value its backward reads; a forward value the schedule computes once and reads
again after its block's forward is saved. Multi-level plans (a block recomputed more than once,
a boundary regenerated from an earlier checkpoint) have no two-level equivalent: the result is
the nearest one, and its prediction says what that costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checkpoint_solver.problem import Graph, Role
from checkpoint_solver.schedule import Compute, Free, Op, Schedule, Status
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers._common import make_schedule

__all__ = [
    "BlockDecision",
    "TwoLevel",
    "forward_of",
    "nearest_two_level",
    "own_tape",
    "two_level",
    "two_level_ops",
    "with_frees",
]


@dataclass(frozen=True)
class BlockDecision:
    """One block's two-level decision: checkpointed or not, and (checkpointed) the forward
    nodes whose values are saved rather than recomputed."""

    stage: int
    checkpoint: bool
    save: frozenset[int] = frozenset()


@dataclass(frozen=True)
class TwoLevel:
    """The decisions per block and the graph schedule that runs them as torch does."""

    blocks: tuple[BlockDecision, ...]
    schedule: Schedule

    @property
    def checkpointed(self) -> tuple[int, ...]:
        """The checkpointed blocks' stages."""
        return tuple(b.stage for b in self.blocks if b.checkpoint)


def with_frees(
    graph: Graph, computes: Sequence[int], hold: Mapping[int, Sequence[int]] | None = None
) -> list[Op]:
    """`computes` as graph ops, each instance of a value freed right after its last reader.

    `hold` maps a position in `computes` to nodes whose current instance must live at least until
    that compute (a reference someone else keeps: a checkpoint's inputs)."""
    last_use: dict[tuple[int, int], int] = {}
    current: dict[int, int] = {}
    for i, v in enumerate(computes):
        for u in (*graph.preds[v], *(hold or {}).get(i, ())):
            if graph.role[u] == Role.OP and u in current:
                last_use[(u, current[u])] = i
        current[v] = i
    frees_at: dict[int, list[int]] = {}
    for i, v in enumerate(computes):
        frees_at.setdefault(last_use.get((v, i), i), []).append(v)
    ops: list[Op] = []
    for i, v in enumerate(computes):
        ops.append(Compute(v))
        ops.extend(Free(u) for u in frees_at.get(i, []))
    return ops


def forward_of(graph: Graph, stage_of: Sequence[int]) -> dict[int, list[int]]:
    """Each stage's forward op nodes, in order (`stage_of`: ``Profile.graph_stages``)."""
    out: dict[int, list[int]] = {}
    for v in graph.ops:
        if not graph.is_backward[v] and stage_of[v] >= 0:
            out.setdefault(stage_of[v], []).append(v)
    return out


def own_tape(graph: Graph, nodes: Sequence[int], stage_of: Sequence[int], k: int) -> set[int]:
    """The values of stage `k`'s forward `nodes` that its own backward reads: what its autograd
    nodes save (another stage's backward reading one keeps it as an ordinary value)."""
    return {
        v for v in nodes if any(graph.is_backward[w] and stage_of[w] == k for w in graph.succs[v])
    }


def nearest_two_level(
    graph: Graph,
    schedule: Schedule,
    stage_of: Sequence[int],
    blocks: Sequence[int],
    *,
    scope: str = "activations",
    cannot_save: frozenset[int] = frozenset(),
) -> TwoLevel:
    """The two-level decisions nearest `schedule` (a graph schedule on `graph`) and their schedule.

    Parameters
    ----------
    stage_of : sequence of int
        Each node's stage (``Profile.graph_stages``: -1 for sources).
    blocks : sequence of int
        The stages that can be checkpointed (a block's module call; the code before the first
        block and after the last cannot).
    cannot_save : frozenset of int
        Nodes a checkpointed block recomputes even where the schedule keeps them (values made by
        in-place ops, which torch does not cache).
    """
    count: dict[int, int] = {}
    for op in schedule.ops:
        if isinstance(op, Compute):
            count[op.node] = count.get(op.node, 0) + 1
    forward = forward_of(graph, stage_of)
    decisions = []
    for k in blocks:
        nodes = forward.get(k, [])
        needed = own_tape(graph, nodes, stage_of, k)
        if not any(count.get(v, 0) > 1 for v in needed):
            decisions.append(BlockDecision(k, False))
            continue
        again = [w for w in graph.ops if count.get(w, 0) > 1]
        reread = {u for w in again for u in graph.preds[w]}
        save = frozenset(
            v
            for v in nodes
            if v not in cannot_save and count.get(v, 0) == 1 and (v in needed or v in reread)
        )
        decisions.append(BlockDecision(k, True, save))
    return two_level(graph, decisions, stage_of, scope=scope, budget=schedule.budget_bytes)


def two_level_ops(
    graph: Graph, decisions: Sequence[BlockDecision], stage_of: Sequence[int]
) -> list[Op]:
    """The graph ops torch runs for these decisions (see the module's docstring)."""
    forward = forward_of(graph, stage_of)
    ops = graph.ops
    computes = [v for v in ops if not graph.is_backward[v]]
    backward = [v for v in ops if graph.is_backward[v]]
    reruns: dict[int, list[int]] = {}  # position in `backward` -> the rerun before it
    holds: dict[int, list[int]] = {}  # position in `backward` -> inputs held until then
    for d in decisions:
        if not d.checkpoint:
            continue
        nodes = forward.get(d.stage, [])
        mine = set(nodes)
        readers = [
            i
            for i, w in enumerate(backward)
            if stage_of[w] == d.stage and any(u in mine for u in graph.preds[w])
        ]
        if not readers:
            continue
        # A saved value is handed to autograd when the rerun reaches its op too, so the rerun
        # runs up to the last value the backward reads, saved or not.
        needed = own_tape(graph, nodes, stage_of, d.stage)
        stop = max((nodes.index(v) for v in needed), default=-1)
        # The rerun stops once autograd has packed the last value the backward needs, and a value
        # is packed by the op that reads it: that op's output is made too, then dropped.
        after = [nodes.index(w) for w in graph.succs[nodes[stop]] if w in mine] if needed else []
        stop = min(after, default=stop)
        reruns[readers[0]] = [v for v in nodes[: stop + 1] if v not in d.save]
        inputs = {u for v in nodes for u in graph.preds[v] if graph.role[u] == Role.OP} - mine
        holds[readers[-1]] = sorted(inputs)
    hold: dict[int, list[int]] = {}
    for i, w in enumerate(backward):
        computes.extend(reruns.get(i, ()))
        computes.append(w)
        if i in holds:
            hold[len(computes) - 1] = holds[i]
    return with_frees(graph, computes, hold)


def two_level(
    graph: Graph,
    decisions: Sequence[BlockDecision],
    stage_of: Sequence[int],
    *,
    scope: str = "activations",
    budget: int | None = None,
) -> TwoLevel:
    """`decisions` with their schedule, simulated on `graph` (`budget`: the schedule's, default
    its own peak)."""
    ops = two_level_ops(graph, decisions, stage_of)
    rep = simulate_ops(graph, ops, scope=scope)
    peak = rep.peak_bytes
    n = sum(d.checkpoint for d in decisions)
    sched = make_schedule(
        graph,
        max(peak, budget or 0),
        ops,
        solver="two-level",
        peak_bytes=peak,
        compute_time=rep.compute_time,
        status=Status.HEURISTIC,
        lower_bound=graph.store_all_time,
        notes=f"torch checkpoint regions with selective policies: {n} of {len(decisions)} blocks",
        scope=scope,
    )
    return TwoLevel(tuple(decisions), sched)
