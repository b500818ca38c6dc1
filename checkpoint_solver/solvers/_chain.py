"""Shared helpers for the chain solvers: the persistent schedule structure and its emission.

Both ``revolve`` and ``dp`` produce schedules of one recursive shape (Beaumont et al. 2019). To
back-propagate stages ``s..t`` when ``a[s-1]`` is available and ``delta[t]`` is held (for ``t < L``):

- **chain branch**: ``F_all(s)``, then stages ``s+1..t`` (their input ``a[s]`` lives in the tape),
  then ``B(s)``;
- **leaf branch at j** (``s < j <= t``): ``F_ck(s), F_n(s+1), ..., F_n(j-1)`` leaves ``a[j-1]``
  kept; solve ``j..t``; then solve ``s..j-1`` from ``a[s-1]`` again.

`emit_plan` walks such a plan iteratively (no recursion limit) and computes each op's peak from the
closed-form memory of the rules in `checkpoint_solver.simulation` (in terms of what the recursion
keeps outside the subproblem), not by replaying state, so a solver's predicted peak is computed
independently of the simulator that checks it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeAlias

from checkpoint_solver.problem import Chain
from checkpoint_solver.schedule import Bwd, FwdCheckpoint, FwdNoTape, FwdTape, Op

__all__ = ["CHAIN", "Decision", "emit_plan", "held_gradient"]

CHAIN = 0
"""Decision code for the chain branch; a leaf branch is its split stage ``j >= 1``."""

# decide(s, t, state) -> (CHAIN, inner_state, None) or (j, right_state, left_state)
Decision: TypeAlias = tuple[int, Any, Any]


def held_gradient(chain: Chain, t: int) -> int:
    """Bytes of ``delta[t]`` held while solving stages ``..t``: 0 for ``t = L`` (the loss has not
    made the seed gradient yet), else ``x[t]``."""
    return 0 if t == chain.length else chain.delta[t]


def emit_plan(
    chain: Chain, decide: Callable[[int, int, Any], Decision], root_state: Any
) -> tuple[list[Op], int, float]:
    """Ops, peak bytes and compute time of the plan that `decide` describes for stages ``1..L``.

    ``outside`` below is the memory held by enclosing subproblems (``a[0]`` at the top); the
    peak of each op is ``outside`` plus what the op needs inside its subproblem.
    """
    x, xbar, of, ob, uf, ub = chain.x, chain.xbar, chain.of, chain.ob, chain.uf, chain.ub
    ofn, d = chain.ofn, chain.delta
    ops: list[Op] = []
    peak = x[0]
    times: list[float] = []
    # Stack items: ("solve", s, t, state, outside) or ("op", op, op_peak, time).
    stack: list[tuple[Any, ...]] = [("solve", 1, chain.length, root_state, x[0])]
    while stack:
        item = stack.pop()
        if item[0] == "op":
            ops.append(item[1])
            peak = max(peak, item[2])
            times.append(item[3])
            continue
        _, s, t, state, outside = item
        if s > t:
            continue
        g = held_gradient(chain, t)
        code, first, second = decide(s, t, state)
        if code == CHAIN:
            stack.append(
                ("op", Bwd(s), outside + xbar[s - 1] + d[s] + d[s - 1] + ob[s - 1], ub[s - 1])
            )
            stack.append(("solve", s + 1, t, first, outside + xbar[s - 1]))
            stack.append(("op", FwdTape(s), outside + g + xbar[s - 1] + of[s - 1], uf[s - 1]))
        else:
            j = code
            stack.append(("solve", s, j - 1, second, outside))
            stack.append(("solve", j, t, first, outside + x[j - 1]))
            for k in range(j - 1, s, -1):
                stack.append(
                    ("op", FwdNoTape(k), outside + g + x[k - 1] + x[k] + ofn[k - 1], uf[k - 1])
                )
            stack.append(("op", FwdCheckpoint(s), outside + g + x[s] + ofn[s - 1], uf[s - 1]))
    return ops, peak, math.fsum(times)
