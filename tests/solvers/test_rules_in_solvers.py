"""The chain solvers weigh torch's rules (per-block, checkpoint_sequential) beside their own
plans, so within a rule's own peak they are never slower than it: on chains whose boundaries
share values (where the DP's accounting counts a value once per boundary and can miss the rule's
plan) and through the slot rounding."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import checkpoint_solver as cs
from checkpoint_solver.problem.synthetic import transformer_chain, uniform_chain
from checkpoint_solver.simulation import simulate, simulate_ops
from checkpoint_solver.solvers.baseline_plans import rule_candidates, rule_plans, torch_per_block
from tests.strategies import chains_with_values


def test_rule_candidates_are_per_block_and_sequential_over_every_framing() -> None:
    texts = {" ".join(str(op) for op in ops) for ops in rule_candidates(4)}
    assert (
        "F_ck(1) F_ck(2) F_ck(3) F_ck(4) F_all(4) B(4) F_all(3) B(3) F_all(2) B(2) F_all(1) B(1)"
        in texts
    )
    # the profile's framing: the prologue (stage 1) and the epilogue (stage 4) stored
    assert "F_all(1) F_ck(2) F_ck(3) F_all(4) B(4) F_all(3) B(3) F_all(2) B(2) B(1)" in texts
    assert all(simulate_ops(uniform_chain(4), ops).valid for ops in rule_candidates(4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains_with_values())
def test_dp_is_never_slower_than_a_rule_within_its_peak(chain: cs.Chain) -> None:
    low = cs.min_budget(chain, "dp")
    for _, peak, time in rule_plans(chain):
        assert low <= peak
        got = cs.solve(chain, peak, "dp")
        report = simulate(chain, got)
        assert report.valid and report.peak_bytes <= peak
        assert got.predicted.compute_time <= time + 1e-9
    # the minimum is exact: solvable there, and one byte less is refused
    assert simulate(chain, cs.solve(chain, low, "dp")).peak_bytes <= low
    with pytest.raises(cs.InfeasibleBudgetError) as info:
        cs.solve(chain, low - 1, "dp")
    assert info.value.min_budget_bytes == low


def test_dp_reaches_a_rule_the_slot_rounding_hides() -> None:
    """A transformer chain at its per-block peak (embedding and head stored, as a profile frames
    them) with 100 slots: rounding every size up, the DP's own table has nothing as fast as
    per-block there (+29 % time without the rules); the rule's plan is returned instead."""
    chain = transformer_chain(4)
    rule = torch_per_block(chain, 2, chain.length - 2)
    got = cs.solve(chain, rule.predicted.peak_bytes, "dp", mem_slots=100)
    assert got.predicted.compute_time <= rule.predicted.compute_time
    assert simulate(chain, got).peak_bytes <= rule.predicted.peak_bytes
    # the relaxation's bound still holds (here it meets the rule's time: proven optimal)
    assert got.lower_bound is not None and got.lower_bound <= got.predicted.compute_time + 1e-12
