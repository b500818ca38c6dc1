"""`dp.OptionsDP` and `dp.least_memory_plan`: the DP over per-stage options that
`hierarchical` runs, through its public API, judged by the simulator."""

from __future__ import annotations

import checkpoint_solver as cs
from checkpoint_solver.problem.synthetic import random_chain
from checkpoint_solver.schedule import Bwd
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers.dp import OptionsDP, least_memory_plan


def _chain() -> cs.Chain:
    return random_chain(6, seed=3)


def _own(chain: cs.Chain) -> list[list[tuple[int, float, int, int]]]:
    return [[(chain.xbar[k], chain.ub[k], chain.of[k], chain.ob[k])] for k in range(chain.length)]


def test_without_options_it_is_dps_table() -> None:
    chain = _chain()
    top = sum(chain.xbar) + sum(chain.x)
    dp = OptionsDP.build(chain, 1, top)
    assert dp.first is not None
    for m in (dp.first, (dp.first + top) // 2, top):
        ops, picks = dp.plan(m)
        rep = simulate_ops(chain, ops)
        # Slots count memory above the input a[0], which the caller holds.
        assert rep.valid and rep.peak_bytes <= m + chain.x[0]
        assert set(picks.values()) == {0}
        # dp itself at that budget, with a slot per byte, is no faster and no slower.
        want = cs.solve(chain, m + chain.x[0], "dp", mem_slots=top + chain.x[0])
        assert abs(rep.compute_time - want.predicted.compute_time) <= 1e-9 * rep.compute_time
    ops, _ = least_memory_plan(chain)
    assert simulate_ops(chain, ops).peak_bytes == cs.min_budget(chain, "dp")


def test_a_faster_option_is_picked_where_memory_allows_and_a_smaller_one_at_the_least() -> None:
    chain = _chain()
    own = _own(chain)
    # Option 1: the same tape, half the backward time. Option 2: half the tape, twice the time.
    faster = [[o[0], (o[0][0], o[0][1] / 2, o[0][2], o[0][3])] for o in own]
    top = sum(chain.xbar) + sum(chain.x)
    ops, picks = OptionsDP.build(chain, 1, top, faster).plan(top)
    assert set(picks.values()) == {1}
    taped = {op.stage for op in ops if isinstance(op, Bwd)}
    assert set(picks) == taped
    # Option 2 of each stage: a smaller tape (never below the stage's output), twice the time.
    smaller = [
        [o[0], (max(chain.x[k + 1], o[0][0] // 2), 2 * o[0][1], o[0][2], o[0][3])]
        for k, o in enumerate(own)
    ]
    _, least_picks = least_memory_plan(chain, smaller)
    shrinks = {k + 1 for k, o in enumerate(smaller) if o[1][0] < o[0][0]}
    assert least_picks and all(least_picks[s] == 1 for s in least_picks if s in shrinks)
