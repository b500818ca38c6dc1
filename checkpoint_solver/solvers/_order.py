"""Topological orders with a low keep-everything peak.

Checkmate's stages compute nodes for the first time in the graph's numbering, and the store-all
peak is that order's. Graphs with much freedom in their order can do far better in another one:
on ``random_layered_n250`` the file's order (the one Moccasin's budgets refer to) keeps 146,840
bytes live at its peak, while the order found here keeps 118,900, 81 % of it, so every node
computed once fits a budget of 90 % that needs recomputation in the file's order. Training graphs
of chains (VGG) have a single order and gain nothing.

The search is list scheduling: repeatedly run, among the nodes whose inputs are all computed, the
one that adds the least memory (its output, minus the inputs it is the last reader of), in two
scorings (that net change, or only what it frees), with ties broken at random over up to 256
restarts, fewer on large graphs (deterministic: seeded). The graph's own order is a candidate too, so the result is never
worse than it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from checkpoint_solver.solvers._plans import OpGraph

__all__ = ["low_peak_order", "reorder", "store_all_peak"]

# Restarts are scaled down on large graphs so that a search stays well under a second.
_WORK = 300_000


def store_all_peak(g: OpGraph, order: Sequence[int]) -> int:
    """Peak bytes of computing each node once in `order`, freeing each value after its last use."""
    position = np.empty(g.n, dtype=np.int64)
    position[list(order)] = np.arange(g.n)
    last = [
        max((int(position[u]) for u in g.users[v]), default=int(position[v])) for v in range(g.n)
    ]
    dying: list[list[int]] = [[] for _ in range(g.n)]
    for v in range(g.n):
        dying[last[v]].append(v)
    mem = peak = g.base_bytes
    for step, v in enumerate(order):
        mem += int(g.size[v])
        peak = max(peak, mem)
        mem -= sum(int(g.size[u]) for u in dying[step])
    return peak


def _list_schedule(g: OpGraph, rng: random.Random | None, frees_only: bool) -> list[int]:
    waiting = [len(p) for p in g.preds]
    readers_left = [len(u) for u in g.users]
    ready = [v for v in range(g.n) if waiting[v] == 0]
    order: list[int] = []
    while ready:
        best_key: tuple[float, float] | None = None
        best = -1
        for v in ready:
            freed = sum(int(g.size[u]) for u in set(g.preds[v]) if readers_left[u] == 1)
            if not g.users[v]:
                freed += int(g.size[v])
            delta = -freed if frees_only else int(g.size[v]) - freed
            key = (float(delta), rng.random() if rng is not None else float(v))
            if best_key is None or key < best_key:
                best_key, best = key, v
        ready.remove(best)
        order.append(best)
        for u in set(g.preds[best]):
            readers_left[u] -= 1
        for w in g.users[best]:
            waiting[w] -= 1
            if waiting[w] == 0:
                ready.append(w)
    return order


def low_peak_order(g: OpGraph, *, restarts: int | None = None, seed: int = 0) -> list[int]:
    """A topological order of `g`'s op nodes (op indices) with the least store-all peak found;
    the identity when nothing beats the graph's own order."""
    identity = list(range(g.n))
    if g.n == 0:
        return identity
    if restarts is None:
        work = g.n + sum(len(p) for p in g.preds)
        restarts = max(8, min(256, _WORK // max(work, 1)))
    rng = random.Random(seed)
    best, best_peak = identity, store_all_peak(g, identity)
    for r in range(restarts):
        frees_only = r % 2 == 1
        order = _list_schedule(g, rng if r >= 2 else None, frees_only)
        peak = store_all_peak(g, order)
        if peak < best_peak:
            best, best_peak = order, peak
    return best


def reorder(g: OpGraph, order: Sequence[int]) -> OpGraph:
    """`g` renumbered so that op index k is `order[k]`; it keeps the graph node ids, so plans
    and op sequences built on it name the same nodes."""
    position = {old: new for new, old in enumerate(order)}
    preds = tuple(tuple(sorted(position[u] for u in g.preds[old])) for old in order)
    users: list[list[int]] = [[] for _ in order]
    for v, ps in enumerate(preds):
        for u in ps:
            users[u].append(v)
    index = np.asarray(order, dtype=np.int64)
    return OpGraph(
        nodes=tuple(g.nodes[old] for old in order),
        size=g.size[index],
        cost=g.cost[index],
        preds=preds,
        users=tuple(tuple(u) for u in users),
        no_recompute=g.no_recompute[index],
        base_bytes=g.base_bytes,
    )
