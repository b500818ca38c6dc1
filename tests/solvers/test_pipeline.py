"""`solve_pipeline`: one device budget, per-stage schedules counting in-flight microbatches."""

from __future__ import annotations

import pytest

import checkpoint_solver as cs
from checkpoint_solver.solvers.pipeline import held_bytes, in_flight, solve_pipeline


@pytest.fixture(scope="module")
def chain() -> cs.Chain:
    return cs.load_problem("example:transformer-chain")


def test_in_flight_microbatches() -> None:
    assert [in_flight(k, 4, 8) for k in range(4)] == [4, 3, 2, 1]
    assert [in_flight(k, 4, 2) for k in range(4)] == [2, 2, 2, 1]
    assert [in_flight(k, 3, 5, "gpipe") for k in range(3)] == [5, 5, 5]


def test_held_bytes_is_the_memory_when_the_forward_ends(chain: cs.Chain) -> None:
    # Store-all keeps every tape: by hand, the input and each stage's tape xbar[i], which holds
    # its output too, as the chain model counts F_all (Beaumont et al.).
    sched = cs.solve(chain, cs.min_budget(chain, "store_all"), "store_all")
    by_hand = chain.x[0] + sum(chain.xbar)
    assert held_bytes(chain, sched) == by_hand
    # And at the least memory dp needs, it holds less.
    low = cs.solve(chain, cs.min_budget(chain, "dp"), "dp")
    assert held_bytes(chain, low) < by_hand


def test_earlier_stages_get_leaner_schedules_for_one_budget(chain: cs.Chain) -> None:
    store_all = cs.min_budget(chain, "store_all")
    budget = int(store_all * 1.6)
    plan = solve_pipeline([chain] * 4, budget, microbatches=8)
    assert [s.in_flight for s in plan.stages] == [4, 3, 2, 1]
    for s in plan.stages:
        assert s.peak_bytes == (s.in_flight - 1) * s.held_bytes + s.schedule.predicted.peak_bytes
        assert s.peak_bytes <= budget
        assert cs.simulate(chain, s.schedule).valid
    times = [s.schedule.predicted.compute_time for s in plan.stages]
    assert times == sorted(times, reverse=True) and times[0] > times[-1]
    # The last stage holds one microbatch: it keeps everything when that fits.
    assert times[-1] == pytest.approx(chain.store_all_time)
    assert plan.peak_bytes <= budget


def test_a_budget_no_stage_schedule_fits_names_the_least(chain: cs.Chain) -> None:
    low = cs.min_budget(chain, "dp")
    with pytest.raises(cs.InfeasibleBudgetError, match="pipeline stage 0") as info:
        solve_pipeline([chain, chain], low, microbatches=4)
    assert info.value.min_budget_bytes > low
    for bad in ({"microbatches": 0}, {"microbatches": 2, "kind": "zb"}):
        with pytest.raises(cs.InvalidOptionError):
            solve_pipeline([chain], "1GiB", **bad)
