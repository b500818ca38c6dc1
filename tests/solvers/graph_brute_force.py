"""Exhaustive search over graph schedules, written independently of the solvers.

Dijkstra over (live values, nodes computed at least once), with Checkmate's accounting from
``checkpoint_solver/simulation.py``'s docstring: computing v needs its inputs live and adds its
output; frees are free. With `frontier_order`, first computations must follow the graph's node
numbering (Checkmate's frontier-advancing model, which the MILP solves); recomputations are free
to happen at any time.
"""

from __future__ import annotations

import heapq
import itertools

from checkpoint_solver import Graph


def graph_brute_force(graph: Graph, budget: int, *, frontier_order: bool = True) -> float | None:
    """Least compute time of a complete schedule within `budget`, or None."""
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
    queue = [(0.0, next(counter), 0, 0)]
    seen = set()
    while queue:
        time, _, live, done = heapq.heappop(queue)
        if (live, done) in seen:
            continue
        seen.add((live, done))
        if done == full:
            return time
        mem = base + sum(size[k] for k in range(n) if live >> k & 1)
        for k in range(n):
            bit = 1 << k
            if live & bit:
                heapq.heappush(queue, (time, next(counter), live & ~bit, done))
                continue
            if done & bit and forbid[k]:
                continue
            if frontier_order and not done & bit and done != (1 << k) - 1:
                continue
            if any(not live >> u & 1 for u in preds[k]):
                continue
            if mem + size[k] <= budget:
                heapq.heappush(queue, (time + cost[k], next(counter), live | bit, done | bit))
    return None
