"""The simulator on hand-traced chains and graphs, and one test per violation kind."""

from __future__ import annotations

import re

import pytest

from checkpoint_solver import (
    Chain,
    FingerprintMismatchError,
    Graph,
    InvalidScheduleError,
    check,
    simulate,
    solve,
)
from checkpoint_solver.schedule import (
    Bwd,
    Compute,
    Free,
    FreeActivation,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
)
from checkpoint_solver.simulation import simulate_ops

# Two stages: x = (4, 2, 3), xbar = (5, 6), of = (1, 2), ob = (3, 1), uf = (1, 2), ub = (10, 20).
TWO = Chain(
    uf=(1, 2), ub=(10, 20), x=(4, 2, 3), xbar=(5, 6), of=(1, 2), ob=(3, 1), cost_unit="abstract"
)
# Three stages: x = (1, 2, 3, 4), xbar = (2, 3, 4), no transients, uf = 1, ub = 2.
THREE = Chain(
    uf=(1, 1, 1), ub=(2, 2, 2), x=(1, 2, 3, 4), xbar=(2, 3, 4), of=(0, 0, 0), ob=(0, 0, 0)
)


def test_two_stage_store_all_hand_traced() -> None:
    """Store-all on TWO follows the hand trace below."""
    # start: a[0] live                                             mem 4
    # F_all(1): +abar[1] 5 -> 9;  peak 9 + of1 1 = 10                  9
    # F_all(2): +abar[2] 6 -> 15; peak 15 + of2 2 = 17                15
    # B(2): +delta[2] 3 (seed) +delta[1] 2 -> 20; peak 20 + ob2 1 = 21
    #       -abar[2] 6 -delta[2] 3 -> 11                              11
    # B(1): +delta[0] 4 -> 15; peak 15 + ob1 3 = 18
    #       -abar[1] 5 -delta[1] 2 -a[0] 4 -> 4                        4
    r = simulate_ops(TWO, [FwdTape(1), FwdTape(2), Bwd(2), Bwd(1)])
    assert r.valid
    assert r.op_peaks == (10, 17, 21, 18)
    assert r.timeline == (9, 15, 11, 4)
    assert (r.peak_bytes, r.peak_index) == (21, 2)
    assert r.compute_time == 33 and r.recompute_time == 0 and r.overhead == 0


def test_two_stage_recompute_hand_traced() -> None:
    """Checkpointing a[0] and recomputing stage 1 on TWO follows the hand trace below."""
    # F_ck(1): +a[1] 2 -> 6; peak 6 + 1 = 7                            6
    # F_all(2): +abar[2] 6 -> 12; peak 12 + 2 = 14                    12
    # B(2): +3 +2 -> 17; peak 17 + 1 = 18; -6 -3 -a[1] 2 -> 6          6
    # F_all(1): +5 -> 11; peak 11 + 1 = 12                            11
    # B(1): +4 -> 15; peak 15 + 3 = 18; -5 -2 -a[0] 4 -> 4             4
    r = simulate_ops(TWO, [FwdCheckpoint(1), FwdTape(2), Bwd(2), FwdTape(1), Bwd(1)])
    assert r.valid
    assert r.op_peaks == (7, 14, 18, 12, 18)
    assert r.timeline == (6, 12, 6, 11, 4)
    assert (r.peak_bytes, r.peak_index) == (18, 2)
    assert r.compute_time == 34 and r.recompute_time == 1
    assert r.overhead == pytest.approx(1 / 33)


def test_three_stage_with_f_n_hand_traced() -> None:
    """A schedule using F_n on THREE follows the hand trace below."""
    # F_ck(1): +2 -> 3                               3
    # F_n(2): +3 -> 6 (peak); -a[1] 2 -> 4            4
    # F_all(3): +4 -> 8                               8
    # B(3): +delta3 4 +delta2 3 -> 15 (peak); -4 -4 -a[2] 3 -> 4
    # F_ck(1): +2 -> 6;  F_all(2): +3 -> 9
    # B(2): +delta1 2 -> 11; -3 -3 -a[1] 2 -> 3
    # F_all(1): +2 -> 5;  B(1): +delta0 1 -> 6; -2 -2 -a[0] 1 -> 1
    ops = [
        FwdCheckpoint(1),
        FwdNoTape(2),
        FwdTape(3),
        Bwd(3),
        FwdCheckpoint(1),
        FwdTape(2),
        Bwd(2),
        FwdTape(1),
        Bwd(1),
    ]
    r = simulate_ops(THREE, ops)
    assert r.valid
    assert r.op_peaks == (3, 6, 8, 15, 6, 9, 11, 5, 6)
    assert r.timeline == (3, 4, 8, 4, 6, 9, 3, 5, 1)
    assert r.peak_bytes == 15 and r.compute_time == 12
    assert r.overhead == pytest.approx(12 / 9 - 1)


def test_free_activation() -> None:
    """free(a[j]) releases a kept activation (and the schedule stays valid)."""
    # Freeing a[2] before F_all(3) leaves stage 3 without its input: invalid at op 3.
    ops = [
        FwdCheckpoint(1),
        FwdCheckpoint(2),
        FreeActivation(2),
        FwdTape(3),
        Bwd(3),
        FwdTape(1),
        FwdTape(2),
        Bwd(2),
        Bwd(1),
    ]
    r = simulate_ops(THREE, ops)
    assert not r.valid and r.violation is not None and r.violation.index == 3
    ok = [
        FwdCheckpoint(1),
        FwdCheckpoint(2),
        FreeActivation(1),
        FwdTape(3),
        Bwd(3),
        FwdCheckpoint(1),
        FreeActivation(1),
        FwdTape(1),
        FwdTape(2),
        Bwd(2),
        Bwd(1),
    ]
    r = simulate_ops(THREE, ok)
    assert r.valid, r.violation
    assert r.timeline[2] == 1 + 3  # a[0] + a[2] after freeing a[1]


CHAIN_VIOLATIONS = [
    (TWO, [FwdTape(3)], 0, "stage 3 does not exist"),
    (TWO, [FwdTape(2)], 0, r"needs a\[1\], which is not live"),
    (TWO, [FwdNoTape(1)], 0, r"would drop the model input a\[0\]"),
    (TWO, [FwdTape(1), FwdNoTape(2)], 1, r"only held inside the tape abar\[1\]; use F_ck\(2\)"),
    (TWO, [FwdCheckpoint(1), FwdCheckpoint(1)], 1, r"a\[1\] is already live"),
    (TWO, [FwdTape(1), FwdTape(1)], 1, r"tape abar\[1\] is already live"),
    (TWO, [FwdCheckpoint(1), FwdCheckpoint(2), Bwd(2)], 2, r"needs the tape abar\[2\]"),
    (TWO, [FwdTape(1), FwdTape(2), Bwd(1)], 2, r"needs delta\[1\], which B\(2\) produces"),
    (TWO, [FwdTape(1), FwdTape(2), Bwd(2), Bwd(2)], 3, r"B\(2\) already ran"),
    (TWO, [FwdTape(1), FwdTape(2), Bwd(2), FwdTape(2)], 3, "already back-propagated"),
    (TWO, [FreeActivation(0)], 0, "owned by the caller"),
    (TWO, [FreeActivation(1)], 0, "nothing to free"),
    (TWO, [FreeActivation(9)], 0, r"a\[9\] does not exist"),
    (TWO, [Compute(0)], 0, "is not a chain op"),
    (
        TWO,
        [FwdCheckpoint(1), FwdTape(2), FreeActivation(1)],
        2,
        r"cannot drop a\[1\] while the tape abar\[2\]",
    ),
    (
        THREE,
        [FwdCheckpoint(1), FwdCheckpoint(2), FwdTape(3), FwdNoTape(3)],
        3,
        r"cannot drop a\[2\] while the tape abar\[3\]",
    ),
]


@pytest.mark.parametrize(("chain", "ops", "index", "reason"), CHAIN_VIOLATIONS)
def test_chain_violation_kinds(chain: Chain, ops: list, index: int, reason: str) -> None:
    """Each chain rule violation is reported at the offending op's index."""
    r = simulate_ops(chain, ops)
    assert not r.valid
    assert r.violation is not None
    assert r.violation.index == index
    assert r.violation.op == str(ops[index])
    assert re.search(reason, r.violation.reason), r.violation.reason


def test_incomplete_schedule_is_reported_at_its_end() -> None:
    """A schedule that stops before B(1) is invalid at index len(ops) with no op."""
    r = simulate_ops(TWO, [FwdTape(1), FwdTape(2), Bwd(2)])
    assert r.violation is not None
    assert (r.violation.index, r.violation.op) == (3, None)
    assert "ends before B(1)" in r.violation.reason


def test_budget_violation_is_the_first_op_over_budget() -> None:
    """With a budget of 20, store-all on TWO fails at B(2), whose peak is 21."""
    r = simulate_ops(TWO, [FwdTape(1), FwdTape(2), Bwd(2), Bwd(1)], budget_bytes=20)
    assert r.violation is not None and r.violation.index == 2
    assert "21 bytes while running, over the budget of 20" in r.violation.reason
    assert simulate_ops(TWO, [FwdTape(1), FwdTape(2), Bwd(2), Bwd(1)], budget_bytes=21).valid


def test_check_raises_with_index() -> None:
    """check() raises InvalidScheduleError carrying the op index and reason."""
    s = solve(TWO, 21, "store_all").replace(ops=(FwdTape(2),))
    with pytest.raises(InvalidScheduleError, match=r"op 0 \(F_all\(2\)\)") as info:
        check(TWO, s)
    assert info.value.index == 0 and info.value.op == "F_all(2)"


def test_schedule_for_another_problem_is_refused() -> None:
    """A schedule solved for one chain cannot be simulated on another."""
    s = solve(TWO, 100, "store_all")
    with pytest.raises(FingerprintMismatchError, match="re-solve for this problem"):
        simulate(THREE, s)
    g = Graph(names=("a",), cost=(1.0,), out_bytes=(1,), is_backward=(False,), edges=())
    with pytest.raises(FingerprintMismatchError, match="for a chain problem but a graph"):
        simulate(g, s)


def test_empty_chain() -> None:
    """A chain of zero stages is complete with no ops; its peak is its input."""
    c = Chain(uf=(), ub=(), x=(7,), xbar=(), of=(), ob=())
    r = simulate_ops(c, [])
    assert r.valid and r.peak_bytes == 7 and r.peak_index == -1 and r.compute_time == 0


# Graph: input p (3 bytes, outside the budget) -> a (2) -> b (4) -> c (1); c also reads a.
G = Graph(
    names=("p", "a", "b", "c"),
    cost=(0.0, 1.0, 2.0, 3.0),
    out_bytes=(3, 2, 4, 1),
    is_backward=(False, False, False, True),
    edges=((0, 1), (1, 2), (1, 3), (2, 3)),
    rng=("none", "none", "forbid_recompute", "none"),
    role=("input", "op", "op", "op"),
)


def test_graph_hand_traced() -> None:
    """Checkmate accounting on G follows the hand trace below."""
    # compute a: 2 ; compute b: 6 ; free ... compute c: 7 ; free a -> 5 ; free b -> 1 ; free c -> 0
    ops = [Compute(1), Compute(2), Compute(3), Free(1), Free(2), Free(3)]
    r = simulate_ops(G, ops)
    assert r.valid
    assert r.op_peaks == (2, 6, 7, 5, 1, 0)
    assert r.peak_bytes == 7 and r.compute_time == 6
    counted = Graph(**{**_graph_fields(G), "sources_in_budget": True})
    assert simulate_ops(counted, ops).peak_bytes == 10


def _graph_fields(g: Graph) -> dict:
    return {
        k: getattr(g, k)
        for k in ("names", "cost", "out_bytes", "is_backward", "edges", "rng", "role")
    }


def test_graph_recompute_counts_time() -> None:
    """Recomputing a node adds its cost again."""
    ops = [Compute(1), Compute(2), Free(1), Compute(1), Compute(3)]
    r = simulate_ops(G, ops)
    assert r.valid and r.compute_time == 7 and r.recompute_time == 1


GRAPH_VIOLATIONS = [
    ([Compute(2)], 0, r"needs the output of node 1 \(a\)"),
    ([Compute(1), Compute(1)], 1, "already live"),
    ([Free(1)], 0, "nothing to free"),
    ([Compute(0)], 0, "is an input"),
    ([Compute(9)], 0, "node 9 does not exist"),
    ([Compute(1), Compute(2), Free(2), Compute(2)], 3, "may not be recomputed"),
    ([FwdTape(1)], 0, "is not a graph op"),
]


@pytest.mark.parametrize(("ops", "index", "reason"), GRAPH_VIOLATIONS)
def test_graph_violation_kinds(ops: list, index: int, reason: str) -> None:
    """Each graph rule violation is reported at the offending op's index."""
    r = simulate_ops(G, ops)
    assert r.violation is not None and r.violation.index == index
    assert re.search(reason, r.violation.reason), r.violation.reason


def test_graph_incomplete_and_over_budget() -> None:
    """A node never computed is reported at the end; a budget overrun at its op."""
    r = simulate_ops(G, [Compute(1), Compute(2)])
    assert (
        r.violation is not None
        and r.violation.index == 2
        and "node 3 (c) is never computed" in r.violation.reason
    )
    r = simulate_ops(G, [Compute(1), Compute(2), Compute(3)], budget_bytes=6)
    assert r.violation is not None and r.violation.index == 2
