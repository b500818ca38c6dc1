"""``revolve``: binomial checkpointing for uniform chains (Griewank & Walther 2000).

Griewank's model has ``l`` steps and ``s`` snapshots (the initial state among them). A schedule
*advances* (runs steps forward without recording) and *reverses* a step (runs it forward with its
tape, then its adjoint). The minimal number of advances is

    t(l, s) = r * l - C(s + r, s + 1),   r = the least integer with C(s + r, s) >= l,

and the binomial schedule attains it. Mapping onto our ops: an advance of stage ``i`` is ``F_ck(i)``
when it starts from a snapshot (which it keeps) and ``F_n(i)`` otherwise; storing a snapshot is
stopping an advance with its output kept (the recursion keeps ``a[j-1]``); reversing stage ``i`` is
``F_all(i), B(i)``. So a revolve schedule has exactly ``t(l, s)`` ops ``F_n``/``F_ck`` and ``l`` ops
``F_all``: its compute time is ``(t(l, s) + l) * uf + l * ub``.

With a budget in bytes and no ``snapshots`` option, the solver takes the largest ``s`` whose peak
fits (time falls as ``s`` grows) and records it in ``options["snapshots"]``.

On a heterogeneous chain (a real model's profile) revolve still emits the binomial schedule, which
depends only on stage positions, with its peak and time computed exactly on that chain; it is then a
baseline, not an optimum (status ``heuristic``): ``dp`` is the solver for heterogeneous chains.

Because every reversal re-runs its step with tape, revolve pays at least ``(l - 1)`` extra forward
steps even with ample memory; ``dp`` also considers taping during the first sweep and is never
slower on the same budget.

References
----------
A. Griewank, A. Walther, "Algorithm 799: revolve", ACM TOMS 26(1), 2000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem import Chain
from checkpoint_solver.schedule import Schedule, Status
from checkpoint_solver.solvers._chain import CHAIN, Decision, emit_plan
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._options import SolverOptions, int_option

__all__ = ["min_budget_revolve", "revolve_steps", "solve_revolve"]


def _reps(l: int, s: int) -> int:
    """The least ``r`` with ``C(s + r, s) >= l``."""
    r = 0
    while math.comb(s + r, s) < l:
        r += 1
    return r


def revolve_steps(l: int, s: int) -> int:
    """Closed-form minimal number of advances ``t(l, s)`` to reverse ``l`` steps with ``s`` snapshots.

    Examples
    --------
    >>> revolve_steps(1000, 10)
    3636
    >>> revolve_steps(4, 2), revolve_steps(3, 1)
    (4, 3)
    """
    if l <= 1:
        return 0
    if s < 1:
        raise InvalidOptionError("revolve needs at least one snapshot (the initial state)")
    r = _reps(l, s)
    return r * l - math.comb(s + r, s + 1)


def _decide(s: int, t: int, c: int) -> Decision:
    """Binomial split for stages ``s..t`` with the start state stored and ``c`` more snapshots."""
    l = t - s + 1
    if l == 1:
        return (CHAIN, None, None)
    if c == 0:
        # One snapshot: advance to a[t-1] (the working state), reverse stage t, repeat.
        return (t, 0, 0)
    snaps = c + 1
    r = _reps(l, snaps)
    # Split after m steps. The right part (l - m steps, one snapshot fewer) must sit at level r,
    # C(snaps + r - 2, snaps - 1) <= l - m <= C(snaps + r - 1, snaps - 1), and the left part
    # (m steps, each already advanced once) at level r - 1,
    # C(snaps + r - 2, snaps) <= m <= C(snaps + r - 1, snaps). Then the total
    # m + t(l - m, snaps - 1) + t(m, snaps) telescopes, by Pascal's rule, to t(l, snaps).
    low_left = math.comb(snaps + r - 2, snaps) if r >= 2 else 0
    m = max(1, l - math.comb(snaps + r - 1, snaps - 1), low_left)
    return (s + m, c - 1, c)


def _peak(chain: Chain, snapshots: int) -> int:
    """Peak bytes of the revolve plan, by a memoized walk of its structure (no ops emitted)."""
    if chain.length == 0:
        return chain.x[0]
    x0, x = chain.x[0], chain.x[1]
    xbar, of, ob, ofn = chain.xbar[0], chain.of[0], chain.ob[0], chain.ofn[0]
    length = chain.length

    @cache
    def inside(l: int, c: int, last: bool, first: bool) -> int:
        # Peak above what the enclosing subproblems hold, for a subproblem of l stages.
        g = 0 if last else x
        prev = x0 if first else x
        if l == 1:
            return max(g + xbar + of, xbar + x + prev + ob)
        if c == 0:
            # Iterate the single-snapshot sweep: advance l-1, reverse the last stage, shrink.
            best = 0
            for k in range(l, 1, -1):
                adv = g + x + ofn if k - 1 == 1 else g + 2 * x + ofn
                best = max(best, adv, x + inside(1, 0, last, False))
                last = False
                g = x
            return max(best, inside(1, 0, last, first))
        j_off = _decide(1, l, c)[0] - 1  # m, the advance length
        adv = g + x + ofn if j_off == 1 else g + 2 * x + ofn
        right = x + inside(l - j_off, c - 1, last, False)
        left = inside(j_off, c, False, first)
        return max(adv, right, left)

    return x0 + inside(length, snapshots - 1, True, True)


def _exact_peak(chain: Chain, snapshots: int) -> int:
    """Peak of the binomial plan on any chain (emits the ops; for heterogeneous chains)."""
    return emit_plan(chain, _decide, snapshots - 1)[1]


def _peak_of(chain: Chain, snapshots: int) -> int:
    return _peak(chain, snapshots) if chain.is_uniform else _exact_peak(chain, snapshots)


@dataclass(frozen=True)
class RevolveOptions(SolverOptions):
    """``revolve``'s options (see `solve_revolve`)."""

    snapshots: int | None = None

    def check(self) -> None:
        int_option(
            "snapshots",
            self.snapshots,
            allow_none=True,
            hint="(the initial state counts as one), or leave it unset to use as many as the "
            "budget allows",
        )


def _snapshot_range(chain: Chain, snapshots: int | None) -> list[int]:
    RevolveOptions(snapshots)
    if snapshots is None:
        return list(range(1, max(chain.length, 1) + 1))
    return [snapshots]


def _largest_fitting(chain: Chain, budget_bytes: int, candidates: list[int]) -> int | None:
    """Largest candidate whose peak fits; on a uniform chain peaks grow with the snapshot count
    (binary search), on others every count is tried."""
    if not chain.is_uniform:
        fits = [s for s in candidates if _exact_peak(chain, s) <= budget_bytes]
        return max(fits, default=None)
    lo, hi, best = 0, len(candidates) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if _peak(chain, candidates[mid]) <= budget_bytes:
            best, lo = candidates[mid], mid + 1
        else:
            hi = mid - 1
    return best


def solve_revolve(chain: Chain, budget_bytes: int, /, *, snapshots: int | None = None) -> Schedule:
    """Binomial checkpointing with `snapshots` snapshots, or the most that fit the budget.

    Parameters
    ----------
    snapshots : int | None
        Snapshots ``s`` including the initial state (Griewank's convention, as in
        ``checkpoint_schedules.Revolve``). ``None``: the largest ``s <= L`` that fits.

    Raises
    ------
    InfeasibleBudgetError
        When even ``s = 1`` (or the given ``s``) does not fit.
    """
    candidates = _snapshot_range(chain, snapshots)
    s = _largest_fitting(chain, budget_bytes, candidates)
    if s is None:
        raise InfeasibleBudgetError(
            budget_bytes,
            min_budget_revolve(chain, snapshots=snapshots),
            "revolve",
            hint="or use dp",
        )
    ops, peak, time = emit_plan(chain, _decide, s - 1)
    l = chain.length
    advances = revolve_steps(l, s)
    uniform = chain.is_uniform
    if uniform:
        uf = chain.uf[0] if l else 0.0
        ub = chain.ub[0] if l else 0.0
        time = (advances + l) * uf + l * ub
    notes = (
        f"{s} snapshots (initial state included); {advances} advances = t({l}, {s}), the "
        f"binomial minimum in Griewank's model"
        + ("; the most snapshots that fit the budget" if snapshots is None else "")
    )
    if not uniform:
        notes += (
            "; the chain is not uniform, so this is the binomial schedule as a baseline, not an "
            "optimum (dp is optimal for heterogeneous chains)"
        )
    return make_schedule(
        chain,
        budget_bytes,
        ops,
        solver="revolve",
        peak_bytes=peak,
        compute_time=time,
        options={"snapshots": s},
        status=Status.OPTIMAL if uniform else Status.HEURISTIC,
        gap=0.0 if uniform else None,
        notes=notes,
    )


def min_budget_revolve(chain: Chain, /, *, snapshots: int | None = None) -> int:
    """Peak with one snapshot (or with the given count); on a heterogeneous chain the least peak
    over the snapshot counts."""
    candidates = _snapshot_range(chain, snapshots)
    if chain.is_uniform:
        return _peak(chain, candidates[0])
    return min(_exact_peak(chain, s) for s in candidates)
