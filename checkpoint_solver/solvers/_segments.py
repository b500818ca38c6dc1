"""Blocks of a training graph: which chain stage each node belongs to, for `hierarchical`.

A captured model knows its forward blocks (the stage hooks mark them while tracing); a graph
without them (a Checkmate file, a region captured without ``blocks=``) gets *segments*: its
forward ops in their topological numbering, cut where few bytes cross and the forward cost is
balanced. Either way each backward node then gets its block from the data flow
(`backward_blocks`).
"""

from __future__ import annotations

import math

from checkpoint_solver.problem import Graph, Role
from checkpoint_solver.problem.blocks import backward_blocks

__all__ = ["find_segments"]


def find_segments(graph: Graph, count: int | None = None) -> tuple[int, ...]:
    """A block per node for a graph captured without blocks.

    The forward ops, in the graph's (topological) numbering, are cut into `count` segments
    (default: about the square root of their number, at least 2) of about equal forward cost,
    each cut placed, within a third of a segment of its target, where the fewest bytes of forward
    values cross it. Backward nodes follow `backward_blocks`: the backward nodes that read no
    other backward node are its roots (what the loss's gradient starts from)."""
    ops = graph.ops
    fwd = [v for v in ops if not graph.is_backward[v]]
    n = len(fwd)
    blocks = [-1 if graph.role[v] != Role.OP else 0 for v in range(graph.size)]
    if n == 0:
        return tuple(blocks)
    k = count if count is not None else max(2, round(math.sqrt(n)))
    k = max(1, min(k, n))
    pos = {v: i for i, v in enumerate(fwd)}
    # crossing[i]: bytes of forward values made at positions <= i that a forward node after i
    # reads (the boundary a cut after position i would have).
    delta = [0] * (n + 1)
    for v in fwd:
        last = max((pos[w] for w in graph.succs[v] if w in pos), default=pos[v])
        if last > pos[v]:
            delta[pos[v]] += graph.out_bytes[v]
            delta[last] -= graph.out_bytes[v]
    crossing = []
    running = 0
    for i in range(n):
        running += delta[i]
        crossing.append(running)
    cost = [max(graph.cost[v], 0.0) for v in fwd]
    total = math.fsum(cost)
    prefix = []
    acc = 0.0
    for c in cost:
        acc += c
        prefix.append(acc)
    cuts: list[int] = []  # segment j ends at position cuts[j] (inclusive)
    window = max(1, n // (3 * k))
    start = 0
    for j in range(1, k):
        if total > 0:
            target = next((i for i, p in enumerate(prefix) if p >= total * j / k), n - 1)
        else:
            target = n * j // k
        lo, hi = max(start, target - window), min(n - 2, target + window)
        if lo > hi:
            continue
        cut = min(range(lo, hi + 1), key=lambda i: (crossing[i], abs(i - target)))
        cuts.append(cut)
        start = cut + 1
    segment = 1
    ends = iter(cuts)
    end = next(ends, n - 1)
    for i, v in enumerate(fwd):
        blocks[v] = segment
        if i == end:
            segment += 1
            end = next(ends, n - 1)
    n_blocks = max(blocks[v] for v in fwd)
    backward = graph.is_backward
    is_op = [r == Role.OP for r in graph.role]
    roots = [
        v for v in ops if backward[v] and not any(is_op[u] and backward[u] for u in graph.preds[v])
    ]
    sinks = [v for v in ops if graph.names[v] == "sink"]
    return tuple(
        backward_blocks(
            blocks,
            graph.preds,
            is_op,
            backward,
            roots,
            sinks[0] if sinks else None,
            n_blocks,
            graph.out_bytes,
        )
    )
