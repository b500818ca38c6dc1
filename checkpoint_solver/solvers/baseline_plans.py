"""What torch's own checkpointing does, written as chain schedules, so the simulator can price it.

These are not solvers (they ignore the budget): they are the points users reach today, put on the
same memory/time axes as ours.

- `torch_per_block`: ``torch.utils.checkpoint`` around every block (``use_reentrant=False``), what
  ``gradient_checkpointing_enable()`` does in Hugging Face models. Code outside the blocks (the
  prologue and the epilogue, loss included) keeps its tape.
- `torch_sequential`: ``torch.utils.checkpoint.checkpoint_sequential``'s rule with `segments`
  segments over the blocks: chunks of ``n // segments`` consecutive blocks, every chunk but the
  last run under one checkpoint, the last chunk and the remainder stored.

- `offload_per_block`: per-block checkpointing with every kept block input moved to host memory
  while the forward goes on and brought back one op before its block is rerun: Unsloth's
  ``use_gradient_checkpointing="unsloth"`` (the last block's input stays on the device), and
  torchtune's ``OffloadActivations`` as it recommends running it, under per-block checkpointing
  (then the saved tensors it offloads are the blocks' inputs; ``keep_last=False``).
- `offload_saved`: at op level (a `Graph`), torchtune's ``OffloadActivations`` without
  checkpointing: nothing recomputed, every saved activation (a forward value a backward op reads,
  at least ``min_offload_size`` bytes) copied to host memory as it is made, dropped on the device
  after its last forward reader, and brought back `lookahead` ops before its first backward
  reader.

``first`` is the 1-based stage of the first block and ``count`` the number of blocks; by default
every stage is a block. For a `checkpoint_solver.profiling.Profile`, `profile_blocks` gives them.

Examples
--------
>>> from checkpoint_solver.problem.synthetic import uniform_chain
>>> s = torch_per_block(uniform_chain(4))
>>> " ".join(str(op) for op in s.ops)
'F_ck(1) F_ck(2) F_ck(3) F_ck(4) F_all(4) B(4) F_all(3) B(3) F_all(2) B(2) F_all(1) B(1)'
>>> " ".join(str(op) for op in torch_sequential(uniform_chain(4), 2).ops)
'F_ck(1) F_n(2) F_all(3) F_all(4) B(4) B(3) F_all(1) F_all(2) B(2) B(1)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from checkpoint_solver.errors import InvalidOptionError
from checkpoint_solver.problem import Chain, Graph, Problem
from checkpoint_solver.problem.profile import StageKind
from checkpoint_solver.problem.states import resolve_scope
from checkpoint_solver.schedule import HostLink, Op, Schedule
from checkpoint_solver.schedule.ops import (
    Bwd,
    Compute,
    Free,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
    Offload,
    OffloadValue,
    Prefetch,
    PrefetchValue,
    parse_op,
)
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers._common import make_schedule

__all__ = [
    "fastest_rule",
    "offload_ops",
    "offload_per_block",
    "offload_rule_plans",
    "offload_saved",
    "profile_blocks",
    "rule_candidates",
    "rule_ops",
    "rule_plans",
    "torch_per_block",
    "torch_sequential",
]


def profile_blocks(stage_names: Sequence[str]) -> tuple[int, int]:
    """``(first, count)`` of a profile's blocks from its stage names: the profiler's
    ``"prologue"`` and ``"epilogue+loss"`` stages are not blocks.

    >>> profile_blocks(["prologue", "blocks.0", "blocks.1", "epilogue+loss"])
    (2, 2)
    """
    kinds = [StageKind.of(n) for n in stage_names]
    first = 2 if kinds and kinds[0] is StageKind.PROLOGUE else 1
    tail = bool(kinds) and kinds[-1] is StageKind.EPILOGUE
    last = len(stage_names) - (1 if tail else 0)
    return first, max(last - first + 1, 0)


def _range(chain: Chain, first: int, count: int | None) -> tuple[int, int]:
    count = chain.length - first + 1 if count is None else count
    if first < 1 or count < 1 or first + count - 1 > chain.length:
        raise InvalidOptionError(
            f"blocks {first}..{first + (count or 0) - 1} are not stages of a {chain.length}-stage "
            f"chain; give first >= 1 and first + count - 1 <= {chain.length}"
        )
    return first, count


def rule_ops(n: int, first: int, count: int, chunk: int, stored_tail: int) -> list[Op]:
    """The chain ops of an `n`-stage chain whose blocks ``first .. first + count - 1`` run in
    chunks of `chunk` under one checkpoint each, the last `stored_tail` blocks and everything
    outside the blocks stored."""
    kinds = {i: "F_all" for i in range(1, n + 1)}
    chunks = []
    last_ckpt = first + count - stored_tail
    for head in range(first, last_ckpt, chunk):
        members = list(range(head, min(head + chunk, last_ckpt)))
        chunks.append(members)
        kinds[head] = "F_ck"
        for i in members[1:]:
            kinds[i] = "F_n"
    text = [f"{kinds[i]}({i})" for i in range(1, n + 1)]
    text += [f"B({i})" for i in range(n, last_ckpt - 1, -1)]
    for members in reversed(chunks):
        text += [f"F_all({i})" for i in members] + [f"B({i})" for i in reversed(members)]
    text += [f"B({i})" for i in range(first - 1, 0, -1)]
    return [parse_op(t) for t in text]


def rule_candidates(n: int) -> list[list[Op]]:
    """The plans torch's rules give an `n`-stage chain, for every way its blocks may be framed
    (the first and the last stage each a block or not: a profile's prologue and epilogue are
    not): per-block, and `checkpoint_sequential` at 2 segments and at about the square root of
    the block count. The chain solvers weigh them beside their own plans, so a schedule is never
    slower than the rule a user would reach for within the same budget (a DP's slot rounding, or
    an accounting that counts a shared value once per boundary, can miss these plans)."""
    out: list[list[Op]] = []
    seen: set[tuple[object, ...]] = set()
    for first, count in _framings(n):
        shapes = [(1, 0)]  # per-block: chunks of one, nothing stored
        for segments in sorted({2, max(1, round(math.sqrt(count)))}):
            if 1 <= segments <= count:
                size = count // segments
                shapes.append((size, count - (segments - 1) * size))
        for chunk, stored_tail in shapes:
            ops = rule_ops(n, first, count, chunk, stored_tail)
            key = tuple(str(op) for op in ops)
            if key not in seen:
                seen.add(key)
                out.append(ops)
    return out


def _framings(n: int) -> list[tuple[int, int]]:
    """``(first, count)`` of the blocks of an `n`-stage chain, the first and the last stage each
    a block or not."""
    out = []
    for first in (1, 2):
        for last in (n, n - 1):
            if last - first + 1 >= 1:
                out.append((first, last - first + 1))
    return out


Rule = tuple[list[Op], int, float]  # a rule's chain ops, simulated peak and (step) time


def rule_plans(chain: Chain) -> list[Rule]:
    """`rule_candidates` for `chain` with their simulated peaks and times (activations, as the
    chain counts them: a whole-step chain's are the step's)."""
    out = []
    for ops in rule_candidates(chain.length):
        rep = simulate_ops(chain, ops)
        if rep.valid:
            out.append((ops, rep.peak_bytes, rep.compute_time))
    return out


def offload_rule_plans(chain: Chain, link: HostLink) -> list[Rule]:
    """The offload baselines' plans (`offload_per_block`: Unsloth-style and torchtune-style) for
    every framing of `rule_candidates`, with their simulated peaks and step times (compute plus
    the waits for copies over `link`), for ``dp-offload`` to weigh as ``dp`` weighs torch's."""
    out = []
    seen: set[tuple[str, ...]] = set()
    for first, count in _framings(chain.length):
        for keep_last in (True, False):
            ops = offload_ops(rule_ops(chain.length, first, count, 1, 0), keep_last)
            key = tuple(str(op) for op in ops)
            if key in seen:
                continue
            seen.add(key)
            rep = simulate_ops(chain, ops, link=link)
            if rep.valid:
                out.append((ops, rep.peak_bytes, rep.step_time))
    return out


def fastest_rule(rules: Sequence[Rule], budget_bytes: int, time: float = math.inf) -> Rule | None:
    """The fastest of `rules` within `budget_bytes` that is faster than `time`, if any."""
    fits = [r for r in rules if r[1] <= budget_bytes and r[2] < time * (1 - 1e-12)]
    return min(fits, key=lambda r: (r[2], r[1])) if fits else None


def _schedule(
    chain: Chain,
    first: int,
    count: int,
    chunk: int,
    stored_tail: int,
    name: str,
    options: Any,
    scope: str | None = None,
) -> Schedule:
    """`rule_ops` as a schedule whose budget is its own simulated peak in `scope` (as in
    `solve`: the whole step when the chain has model states)."""
    ops = rule_ops(chain.length, first, count, chunk, stored_tail)
    note = "torch's rule, not an optimisation; budget = its own simulated peak"
    return _at_own_peak(chain, ops, name, options, note, scope)


def _at_own_peak(
    chain: Problem,
    ops: list[Op],
    name: str,
    options: Any,
    note: str,
    scope: str | None,
    link: HostLink | None = None,
) -> Schedule:
    """`ops` as a schedule whose budget is its own simulated peak in `scope`."""
    which = resolve_scope(chain, scope)
    report = simulate_ops(chain, ops, scope=which, link=link)
    return make_schedule(
        chain,
        report.peak_bytes,
        ops,
        solver=name,
        peak_bytes=report.peak_bytes,
        compute_time=report.compute_time,
        options=options,
        notes=note,
        scope=which,
        link=link,
    )


def torch_per_block(
    chain: Chain, first: int = 1, count: int | None = None, *, scope: str | None = None
) -> Schedule:
    """Every block under its own checkpoint (its input kept, its tape rebuilt in backward)."""
    first, count = _range(chain, first, count)
    options = {"first": first, "count": count}
    return _schedule(chain, first, count, 1, 0, "torch-per-block", options, scope)


def torch_sequential(
    chain: Chain,
    segments: int,
    first: int = 1,
    count: int | None = None,
    *,
    scope: str | None = None,
) -> Schedule:
    """``checkpoint_sequential(blocks, segments)``: the first ``segments - 1`` chunks of
    ``count // segments`` blocks checkpointed, the rest stored."""
    first, count = _range(chain, first, count)
    if not 1 <= segments <= count:
        raise InvalidOptionError(
            f"segments={segments} is not valid for {count} blocks; give 1..{count}"
        )
    size = count // segments
    return _schedule(
        chain,
        first,
        count,
        size,
        count - (segments - 1) * size,
        f"torch-sequential-{segments}",
        {"first": first, "count": count, "segments": segments},
        scope,
    )


def offload_ops(ops: Sequence[Op], keep_last: bool = True) -> list[Op]:
    """`ops` (a per-block plan) with each block input kept plain in the forward phase offloaded
    before the block that reads it runs, and prefetched before the compute op that precedes its
    block's rerun. With `keep_last`, the last block's input stays on the device."""
    first_b = next(k for k, op in enumerate(ops) if isinstance(op, Bwd))
    forward = {op.stage: op for op in ops[:first_b] if hasattr(op, "stage")}
    # a[j] may go when stage j+1 runs without tape (no live tape holds it) and a[j] is plain.
    eligible = [
        j
        for j in range(1, len(forward))
        if isinstance(forward.get(j + 1), FwdCheckpoint)
        and isinstance(forward.get(j), (FwdCheckpoint, FwdNoTape))
    ]
    if keep_last and eligible:
        eligible = eligible[:-1]
    compute = (Bwd, FwdCheckpoint, FwdNoTape, FwdTape)
    out: list[Op] = []
    before: dict[int, list[Op]] = {}  # op index -> prefetches issued before it
    for j in eligible:
        rerun = next(
            (
                k
                for k in range(first_b, len(ops))
                if isinstance(ops[k], (FwdCheckpoint, FwdNoTape, FwdTape)) and ops[k].stage == j + 1  # type: ignore[union-attr]
            ),
            None,
        )
        if rerun is None:
            continue
        prior = max(k for k in range(rerun) if isinstance(ops[k], compute))
        before.setdefault(prior, []).append(Prefetch(j))
    for k, op in enumerate(ops):
        if k < first_b and isinstance(op, FwdCheckpoint) and op.stage - 1 in eligible:
            out.append(Offload(op.stage - 1))
        out.extend(before.get(k, []))
        out.append(op)
    return out


def offload_per_block(
    chain: Chain,
    link: HostLink,
    first: int = 1,
    count: int | None = None,
    *,
    keep_last: bool = True,
    scope: str | None = None,
) -> Schedule:
    """Per-block checkpointing with the blocks' inputs offloaded (Unsloth-style; torchtune-style
    with ``keep_last=False``), over `link`; its budget is its own simulated peak."""
    first, count = _range(chain, first, count)
    ops = offload_ops(rule_ops(chain.length, first, count, 1, 0), keep_last)
    return _at_own_peak(
        chain,
        ops,
        "unsloth-style" if keep_last else "torchtune-style",
        {"first": first, "count": count, "keep_last": keep_last},
        "offload every block input and recompute the block; budget = its own simulated peak",
        scope,
        link,
    )


def _saved_moves(graph: Graph, min_bytes: int, lookahead: int) -> dict[int, tuple[int, int]]:
    """Per saved activation that can wait on the host: (the position of its last forward reader,
    or its own, and the position whose compute op its prefetch comes before), in compute order."""
    pos = {v: p for p, v in enumerate(graph.ops)}
    moves: dict[int, tuple[int, int]] = {}
    for v in graph.ops:
        if graph.is_backward[v] or graph.out_bytes[v] < min_bytes:
            continue
        backward = [pos[u] for u in graph.succs[v] if graph.is_backward[u]]
        if not backward:
            continue
        last_fwd = max([pos[v], *(pos[u] for u in graph.succs[v] if not graph.is_backward[u])])
        if last_fwd > min(backward):
            continue  # a forward op reads it after the backward started: it stays
        before = min(backward) - lookahead
        if before >= last_fwd + 2:  # one op or more runs while it is away
            moves[v] = (last_fwd, before)
    return moves


def offload_saved_ops(graph: Graph, min_bytes: int = 1024, lookahead: int = 1) -> list[Op]:
    """Store-all's ops (each node once, values freed after their last reader) with every saved
    activation of `min_bytes` or more offloaded as it is computed, freed on the device after its
    last forward reader (the free waits for the copy), and prefetched before the compute op
    `lookahead` ops ahead of its first backward reader (which waits for the copy)."""
    from checkpoint_solver.solvers.store_all import _graph_ops

    moves = _saved_moves(graph, min_bytes, lookahead)
    frees_after: dict[int, list[int]] = {}
    prefetch_before: dict[int, list[int]] = {}
    for v, (last_fwd, before) in sorted(moves.items()):
        frees_after.setdefault(last_fwd, []).append(v)
        prefetch_before.setdefault(before, []).append(v)
    out: list[Op] = []
    position = -1
    for op in _graph_ops(graph, True)[0]:
        if isinstance(op, Compute):
            if position >= 0:
                out.extend(Free(v) for v in frees_after.get(position, []))
            position += 1
            out.extend(PrefetchValue(v) for v in prefetch_before.get(position, []))
            out.append(op)
            if op.node in moves:
                out.append(OffloadValue(op.node))
            continue
        out.append(op)
    out.extend(Free(v) for v in frees_after.get(position, []))
    return out


def offload_saved(
    graph: Graph,
    link: HostLink,
    *,
    min_offload_size: int = 1024,
    lookahead: int = 1,
    scope: str | None = None,
) -> Schedule:
    """torchtune's ``OffloadActivations`` without checkpointing, at op level: no recomputation,
    every saved activation of `min_offload_size` bytes or more (a forward value a backward op
    reads, which the forward no longer needs by then) waits in host memory between its last
    forward reader and `lookahead` ops before its first backward reader; its budget is its own
    simulated peak.

    Raises
    ------
    InvalidOptionError
        For a problem that is not a training graph, or a bad option.
    """
    if not isinstance(graph, Graph):
        raise InvalidOptionError(
            f"offload_saved needs an op-level Graph (cs.profile_graph(...)), not a "
            f"{type(graph).__name__}; on a chain the block inputs are the saved tensors under "
            f"per-block checkpointing: offload_per_block(chain, link, keep_last=False)"
        )
    if not any(graph.is_backward[v] for v in graph.ops):
        raise InvalidOptionError(
            "offload_saved needs a training graph: this one has no backward ops, so nothing is "
            "saved for the backward"
        )
    for name, value, low in (
        ("min_offload_size", min_offload_size, 0),
        ("lookahead", lookahead, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidOptionError(f"{name}={value!r} must be an integer >= {low}")
    ops = offload_saved_ops(graph, min_offload_size, lookahead)
    return _at_own_peak(
        graph,
        ops,
        "torchtune-style",
        {"min_offload_size": min_offload_size, "lookahead": lookahead},
        "offload every saved activation, recompute nothing; budget = its own simulated peak",
        scope,
        link,
    )
