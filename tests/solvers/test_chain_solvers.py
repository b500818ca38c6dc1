"""Revolve against the closed form and checkpoint_schedules; the DP against exhaustive search."""

from __future__ import annotations

import itertools
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkpoint_solver import Chain, InfeasibleBudgetError, min_budget, simulate, solve, tradeoff
from checkpoint_solver.problem.synthetic import random_chain, transformer_chain, uniform_chain
from checkpoint_solver.schedule import FwdCheckpoint, FwdNoTape, FwdTape
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers import revolve as revolve_module
from checkpoint_solver.solvers.store_all import min_budget_store_all
from tests.solvers.brute_force import brute_force


def closed_form(l: int, s: int) -> int:
    """t(l, s) = r*l - C(s+r, s+1), r the least integer with C(s+r, s) >= l (computed here)."""
    r = 0
    while math.comb(s + r, s) < l:
        r += 1
    return r * l - math.comb(s + r, s + 1)


def _advances_in_plan(l: int, s: int) -> int:
    """Advances of revolve's plan, counted by walking its decisions (F_ck + F_n per leaf)."""
    total, stack = 0, [(1, l, s - 1)]
    while stack:
        a, b, c = stack.pop()
        if a >= b:
            continue
        code, right, left = revolve_module._decide(a, b, c)
        if code == 0:
            stack.append((a + 1, b, right))
        else:
            total += code - a
            stack += [(code, b, right), (a, code - 1, left)]
    return total


def test_revolve_closed_form_full_grid() -> None:
    """For every l <= 300 and s <= 30 revolve's plan advances exactly t(l, s) times."""
    for l in range(1, 301):
        for s in range(1, 31):
            assert _advances_in_plan(l, s) == closed_form(l, s), (l, s)
            assert revolve_module.revolve_steps(l, s) == closed_form(l, s)


@pytest.mark.parametrize("l", [1, 2, 3, 7, 16, 33, 60])
@pytest.mark.parametrize("s", [1, 2, 3, 5, 8])
def test_revolve_schedules_match_closed_form(l: int, s: int) -> None:
    """Emitted schedules have t(l, s) advances and l taping forwards, simulate valid and as predicted."""
    chain = uniform_chain(l, x=3, xbar=5, of=1, ob=2)
    sched = solve(chain, 10**9, "revolve", snapshots=s)
    advances = sum(isinstance(op, (FwdNoTape, FwdCheckpoint)) for op in sched.ops)
    assert advances == closed_form(l, s)
    assert sum(isinstance(op, FwdTape) for op in sched.ops) == l
    report = simulate(chain, sched)
    assert report.valid and report.peak_bytes == sched.predicted.peak_bytes
    assert report.compute_time == sched.predicted.compute_time == closed_form(l, s) + 2 * l


@pytest.mark.parametrize(("l", "s"), [(l, s) for l in (1, 2, 4, 9, 17, 40) for s in (1, 2, 3, 6)])
def test_revolve_matches_checkpoint_schedules(l: int, s: int) -> None:
    """checkpoint_schedules.Revolve(l, s) runs t(l, s) + l forward steps; so do we."""
    cs_mod = pytest.importorskip("checkpoint_schedules")
    steps = 0
    for action in cs_mod.Revolve(l, s):
        if isinstance(action, cs_mod.Forward):
            steps += action.n1 - action.n0
        if isinstance(action, cs_mod.EndReverse):
            break
    ours = solve(uniform_chain(l), 10**9, "revolve", snapshots=s)
    assert sum(isinstance(op, (FwdNoTape, FwdCheckpoint, FwdTape)) for op in ours.ops) == steps


def test_revolve_derives_snapshots_from_budget() -> None:
    """Without snapshots, revolve takes the most that fit and records it; peaks grow with s."""
    chain = uniform_chain(50, x=10, xbar=14)
    peaks = [solve(chain, 10**9, "revolve", snapshots=s).predicted.peak_bytes for s in range(1, 12)]
    assert peaks == sorted(peaks)
    sched = solve(chain, peaks[5], "revolve")
    assert sched.options["snapshots"] >= 6 and "most snapshots that fit" in sched.notes
    with pytest.raises(InfeasibleBudgetError) as info:
        solve(chain, peaks[0] - 1, "revolve")
    assert info.value.min_budget_bytes == peaks[0] == min_budget(chain, "revolve")


def test_revolve_on_heterogeneous_chains_is_the_binomial_baseline() -> None:
    """On a non-uniform chain revolve emits the same binomial op sequence as on a uniform chain
    of the same length (it depends on positions only), marked heuristic, with the simulator's
    peak and time; and it fits the budget it picks its snapshot count for."""
    chain = random_chain(7, seed=1)
    for s in range(1, 8):
        ours = solve(chain, 10**12, "revolve", snapshots=s)
        assert ours.ops == solve(uniform_chain(7), 10**12, "revolve", snapshots=s).ops
        assert ours.status.value == "heuristic"
        assert "not uniform" in ours.notes
        report = simulate(chain, ours)
        assert report.valid
        assert ours.predicted.peak_bytes == report.peak_bytes
        assert ours.predicted.compute_time == pytest.approx(report.compute_time)
    low = min_budget(chain, "revolve")
    picked = solve(chain, low, "revolve")
    assert simulate(chain, picked).peak_bytes <= low
    with pytest.raises(InfeasibleBudgetError) as info:
        solve(chain, low - 1, "revolve")
    assert info.value.min_budget_bytes == low


def test_revolve_is_fast() -> None:
    """l = 10,000 with 64 snapshots generates in well under a second."""
    chain = uniform_chain(10_000)
    start = time.perf_counter()
    sched = solve(chain, 10**9, "revolve", snapshots=64)
    assert time.perf_counter() - start < 5  # generous for slow CI; the benchmark records the number
    assert sum(isinstance(op, (FwdNoTape, FwdCheckpoint)) for op in sched.ops) == closed_form(
        10_000, 64
    )


def small_chains() -> st.SearchStrategy[Chain]:
    return st.builds(
        lambda n, seed: random_chain(n, seed=seed, max_time=6, max_bytes=6),
        st.integers(min_value=1, max_value=6),
        st.integers(min_value=0, max_value=10**6),
    )


@settings(max_examples=40)
@given(chain=small_chains(), frac=st.floats(min_value=0, max_value=1))
def test_dp_equals_brute_force(chain: Chain, frac: float) -> None:
    """On small chains (1-byte slots, so exact) the DP's time equals the exhaustive optimum over
    persistent schedules, and is never below the optimum over all valid schedules."""
    low, high = min_budget(chain, "dp"), min_budget_store_all(chain) + 2
    budget = max(1, int(low + frac * (high - low)))
    best = brute_force(chain, budget, persistent=True)
    anything = brute_force(chain, budget)
    assert best is not None and anything is not None
    sched = solve(chain, budget, "dp")
    assert sched.options["slot_bytes"] == 1 and sched.status.value == "optimal"
    assert sched.predicted.compute_time == pytest.approx(best[0])
    assert sched.predicted.compute_time >= anything[0] - 1e-9
    # Both exhaustive optima are valid schedules under the simulator.
    for time_, ops in (best, anything):
        report = simulate_ops(chain, ops, budget_bytes=budget)
        assert report.valid and report.compute_time == pytest.approx(time_)


def test_non_persistent_schedules_can_beat_the_dp() -> None:
    """A known case where dropping a kept checkpoint early (non-persistent) is faster: the DP's
    optimality claim is for persistent schedules."""
    chain = random_chain(4, seed=999999, max_time=6, max_bytes=6)
    budget = min_budget(chain, "dp")
    assert solve(chain, budget, "dp").predicted.compute_time == 68
    assert brute_force(chain, budget, persistent=True)[0] == 68
    assert brute_force(chain, budget)[0] == 63


@settings(max_examples=40)
@given(chain=small_chains())
def test_dp_minimum_equals_brute_force_minimum(chain: Chain) -> None:
    """The DP's minimum budget is the least budget any persistent schedule fits."""
    low = min_budget(chain, "dp")
    assert brute_force(chain, low, persistent=True) is not None
    if low > 1:
        assert brute_force(chain, low - 1, persistent=True) is None


@given(chain=small_chains())
def test_dp_time_is_non_increasing_in_budget(chain: Chain) -> None:
    """More memory never makes the DP slower; at the store-all peak there is no recomputation."""
    low, high = min_budget(chain, "dp"), min_budget_store_all(chain)
    times = [solve(chain, b, "dp").predicted.compute_time for b in range(low, high + 1)]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(times))
    assert times[-1] == pytest.approx(chain.store_all_time)


@given(n=st.integers(1, 40), x=st.integers(1, 6), extra=st.integers(0, 6), s=st.integers(1, 8))
def test_dp_never_worse_than_revolve(n: int, x: int, extra: int, s: int) -> None:
    """On uniform chains, dp at revolve's peak is at least as fast as revolve."""
    chain = uniform_chain(n, x=x, xbar=x + extra, of=1, ob=1)
    rev = solve(chain, 10**9, "revolve", snapshots=s)
    ours = solve(chain, rev.predicted.peak_bytes, "dp")
    assert ours.predicted.compute_time <= rev.predicted.compute_time + 1e-9


def test_dp_gap_is_reported_on_coarse_slots() -> None:
    """With multi-byte slots the DP reports a lower bound and a gap, and the bound is below the time."""
    chain = transformer_chain(6)
    budget = (min_budget(chain, "dp") + min_budget_store_all(chain)) // 2
    sched = solve(chain, budget, "dp")
    assert sched.options["slot_bytes"] > 1
    assert sched.lower_bound is not None and sched.lower_bound <= sched.predicted.compute_time
    if sched.status.value == "feasible":
        assert sched.gap == pytest.approx(
            (sched.predicted.compute_time - sched.lower_bound) / sched.lower_bound
        )
    else:
        assert sched.gap == 0


def test_dp_at_exact_minimum_on_coarse_slots() -> None:
    """At the exact minimum budget of a large chain the DP still returns a schedule within it."""
    chain = transformer_chain(12)
    low = min_budget(chain, "dp")
    sched = solve(chain, low, "dp")
    assert simulate(chain, sched).peak_bytes <= low
    with pytest.raises(InfeasibleBudgetError):
        solve(chain, low - 1, "dp")


def test_dp_tradeoff_from_one_table() -> None:
    """dp's trade-off curve: every point valid within its budget, time non-increasing, last point store-all."""
    chain = transformer_chain(6)
    curve = tradeoff(chain, solver="dp", points=12)
    assert all(p.feasible for p in curve)
    assert all(p.peak_bytes <= p.budget_bytes for p in curve)
    times = [p.compute_time for p in curve]
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(times))
    assert curve[-1].overhead == 0
    below = tradeoff(chain, [min_budget(chain, "dp") - 1], "dp")
    assert not below[0].feasible
