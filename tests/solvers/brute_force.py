"""An exhaustive search over every valid chain schedule, written independently of the solvers.

Dijkstra over the full state of a chain execution (which activations are kept plain, which tapes
and gradients are live, which backwards are done), with each op's memory taken from the rule table
in ``checkpoint_solver/simulation.py``'s docstring. It finds the least compute time of any
complete schedule whose every op stays within the budget, and that schedule.
"""

from __future__ import annotations

import heapq
import itertools

from checkpoint_solver import Chain
from checkpoint_solver.schedule import Bwd, FreeActivation, FwdCheckpoint, FwdNoTape, FwdTape


def brute_force(
    chain: Chain, budget: int, *, persistent: bool = False
) -> tuple[float, list] | None:
    """(least time, ops) over all valid schedules within `budget`, or None if there is none.

    With `persistent`, only schedules in which an activation kept by ``F_ck`` stays until the
    ``B`` that consumes it (Beaumont et al.'s persistent schedules, the class the DP optimises
    over): ``F_ck(i)`` pins ``a[i-1]``, and a pinned activation may not be dropped by ``F_n`` or
    ``free``.
    """
    n = chain.length
    x, xbar, of, ob, uf, ub = chain.x, chain.xbar, chain.of, chain.ob, chain.uf, chain.ub
    full = (1 << (n + 1)) - 2  # done bits for stages 1..n

    def bit(i: int) -> int:
        return 1 << i

    def memory(plain: int, tape: int, grad: int) -> int:
        return (
            sum(x[j] for j in range(n + 1) if plain & bit(j))
            + sum(xbar[i - 1] for i in range(1, n + 1) if tape & bit(i))
            + sum(x[j] for j in range(n + 1) if grad & bit(j))
        )

    start = (bit(0), 0, 0, 0, 0)
    if x[0] > budget:
        return None
    counter = itertools.count()
    queue = [(0.0, next(counter), start, [])]
    seen: dict[tuple[int, int, int, int, int], float] = {}
    while queue:
        time, _, state, ops = heapq.heappop(queue)
        if state in seen:
            continue
        seen[state] = time
        plain, tape, grad, done, pinned = state
        if done == full:
            return time, ops
        mem = memory(plain, tape, grad)

        def droppable(j: int) -> bool:
            # A live tape abar[j+1] may hold its input a[j]: a[j] must stay available.
            if persistent and pinned & bit(j):
                return False
            return not (j + 1 <= n and tape & bit(j + 1)) or bool(tape & bit(j))

        def push(new4: tuple[int, int, int, int], cost: float, op, peak: int, pins: int) -> None:
            new = (*new4, pins if persistent else 0)
            if peak <= budget and new not in seen:
                heapq.heappush(queue, (time + cost, next(counter), new, [*ops, op]))

        for i in range(1, n + 1):
            have_input = bool(plain & bit(i - 1)) or (i >= 2 and bool(tape & bit(i - 1)))
            if not (done & bit(i)) and have_input:
                if not (plain & bit(i)):
                    peak = mem + x[i] + of[i - 1]
                    kept = pinned | (bit(i - 1) if plain & bit(i - 1) else 0)
                    push(
                        (plain | bit(i), tape, grad, done), uf[i - 1], FwdCheckpoint(i), peak, kept
                    )
                    if i >= 2 and plain & bit(i - 1) and droppable(i - 1):
                        dropped = (plain | bit(i)) & ~bit(i - 1)
                        push((dropped, tape, grad, done), uf[i - 1], FwdNoTape(i), peak, pinned)
                if not (tape & bit(i)):
                    taped = (plain, tape | bit(i), grad, done)
                    push(taped, uf[i - 1], FwdTape(i), mem + xbar[i - 1] + of[i - 1], pinned)
            seed = i == n and not (done & bit(i))
            if not (done & bit(i)) and tape & bit(i) and (grad & bit(i) or seed) and have_input:
                before = mem + (x[n] if seed else 0)
                peak = before + x[i - 1] + ob[i - 1]
                new_plain = plain & ~bit(i - 1)
                new = (new_plain, tape & ~bit(i), (grad | bit(i - 1)) & ~bit(i), done | bit(i))
                push(new, ub[i - 1], Bwd(i), peak, pinned & ~bit(i - 1))
            if plain & bit(i) and droppable(i):
                push((plain & ~bit(i), tape, grad, done), 0.0, FreeActivation(i), mem, pinned)
    return None
