"""Exhaustive search over graph schedules, written independently of the solvers.

Dijkstra over (live values, nodes computed at least once), with Checkmate's accounting from
``checkpoint_solver/simulation.py``'s docstring: computing v needs its inputs live and adds its
output; frees are free. With `frontier_order`, first computations must follow the graph's node
numbering (Checkmate's frontier-advancing model); recomputations are free to happen at any time.
With `stage_order` as well, the schedule is one of the MILP's exactly: stage ``t`` recomputes
nodes in ascending order and ends with node ``t``'s first computation (Checkmate's ``R[t, i]``,
run for ``i = 0..t``), so no node is recomputed twice in a stage. That is stricter: a stage that
needs ``0`` and ``3`` live, where ``3`` is rebuilt from ``2`` from ``1``, must make ``0`` first, and
can peak higher than any order would.
"""

from __future__ import annotations

import heapq
import itertools

from checkpoint_solver import Graph


def graph_brute_force(
    graph: Graph, budget: int, *, frontier_order: bool = True, stage_order: bool = False
) -> float | None:
    """Least compute time of a complete schedule within `budget`, or None."""
    assert frontier_order or not stage_order
    ops = [v for v in range(graph.size) if graph.role[v] == "op"]
    index = {v: k for k, v in enumerate(ops)}
    n = len(ops)
    base = (
        sum(graph.out_bytes[v] for v in range(graph.size) if graph.role[v] != "op")
        if graph.sources_in_budget
        else 0
    )
    preds = [[index[u] for u in graph.preds[v] if u in index] for v in ops]
    size = [graph.out_bytes[v] for v in ops]
    cost = [graph.cost[v] for v in ops]
    forbid = [graph.rng[v] == "forbid_recompute" for v in ops]
    full = (1 << n) - 1
    counter = itertools.count()
    # `last`: with `stage_order`, the highest node computed so far in the current stage (-1 once
    # a stage has ended with its first computation).
    queue = [(0.0, next(counter), 0, 0, -1)]
    seen = set()
    while queue:
        time, _, live, done, last = heapq.heappop(queue)
        if (live, done, last) in seen:
            continue
        seen.add((live, done, last))
        if done == full:
            return time
        mem = base + sum(size[k] for k in range(n) if live >> k & 1)
        for k in range(n):
            bit = 1 << k
            if live & bit:
                heapq.heappush(queue, (time, next(counter), live & ~bit, done, last))
                continue
            if done & bit and forbid[k]:
                continue
            if frontier_order and not done & bit and done != (1 << k) - 1:
                continue
            if stage_order and k <= last:
                continue
            if any(not live >> u & 1 for u in preds[k]):
                continue
            if mem + size[k] <= budget:
                after = -1 if not stage_order or not done & bit else k
                heapq.heappush(
                    queue, (time + cost[k], next(counter), live | bit, done | bit, after)
                )
    return None
