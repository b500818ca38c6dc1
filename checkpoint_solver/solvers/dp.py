"""``dp``: the optimal dynamic program for heterogeneous chains (Beaumont et al. 2019).

``Opt(s, t, m)`` is the least time to back-propagate stages ``s..t`` with ``m`` memory slots, given
that ``a[s-1]`` is available (held outside ``m``) and ``delta[t]`` is held inside ``m`` (for
``t < L``; the seed ``delta[L]`` appears at ``B(L)``). With ``g_t`` the bytes of that held gradient,

**Equation (1), one stage**::

    Opt(s, s, m) = uf[s] + ub[s]   if m >= max(g_s + xbar[s] + of[s], xbar[s] + d[s] + d[s-1] + ob[s])

**Equation (2), chain branch** (``F_all(s)``, stages ``s+1..t``, ``B(s)``)::

    C(s, t, m) = uf[s] + ub[s] + Opt(s+1, t, m - xbar[s])
                 if m >= max(g_t + xbar[s] + of[s], xbar[s] + d[s] + d[s-1] + ob[s])

**Equation (3), leaf branch at j** (``F_ck(s), F_n(s+1..j-1)``, stages ``j..t`` holding
``a[j-1]``, then stages ``s..j-1``)::

    L_j(s, t, m) = sum(uf[s..j-1]) + Opt(j, t, m - x[j-1]) + Opt(s, j-1, m)
                   if m >= g_t + max(x[s] + ofn[s], max_{s<k<j} x[k-1] + x[k] + ofn[k])

    Opt(s, t, m) = min(C(s, t, m), min_{s<j<=t} L_j(s, t, m))

where ``d`` is the chain's ``delta`` (gradient bytes; ``x`` unless measured otherwise) and
``g_t = d[t]``. These are the simulator's memory rules (`checkpoint_solver.simulation`) written for the recursion,
so a schedule the DP emits simulates to exactly the time the DP predicts. The top problem is
``Opt(1, L, budget - x[0])``.

**What "optimal" means here.** The recursion ranges over *persistent* schedules: an activation kept
by ``F_ck`` stays until the ``B`` that consumes it. On chains of up to 6 stages with exact slots the
DP equals an exhaustive search over all persistent schedules (tests). Non-persistent schedules,
which consume a kept checkpoint early and regenerate it from further left, are sometimes faster at
tight budgets (a 4-stage example: 63 vs 68 time units at the minimum budget, in the tests);
Beaumont et al.'s costlier "floating" variant covers some of them. ``status: "optimal"`` is
therefore a claim within the persistent class, and the notes of every schedule say so.

Memory is discretised into ``mem_slots`` slots of ``u = ceil((budget - x[0]) / mem_slots)`` bytes
and every size is rounded *up* to whole slots, so an emitted schedule never exceeds the budget.
The same recursion with sizes rounded *down* is a relaxation: its value is a lower bound on the
time of any schedule of this form within the budget, and gives the reported gap (0 and status
``optimal`` when ``u = 1``, where discretisation is exact). The exact minimum budget comes from the
same recursion with "peak" in place of "time" (`min_budget_dp`); at budgets where the slot
rounding leaves no schedule, the minimum-memory schedule is returned.

Torch's rules' plans (`checkpoint_solver.solvers.baseline_plans.rule_candidates`: per-block and
``checkpoint_sequential``) are persistent, so the recursion finds something at least as fast
whenever its slot rounding lets it see their memory; where the rounding hides one that fits and is
faster, that plan is returned (the notes say so; the bound still holds).

The table is vectorised over the memory axis and over ``j`` with numpy: ``O(L^2)`` numpy steps of
``O(L * mem_slots)`` work.

References
----------
O. Beaumont, L. Eyraud-Dubois, J. Herrmann, A. Joly, A. Shilova, "Optimal checkpointing for
heterogeneous chains: how to train deep neural networks with limited memory", 2019 (HAL
hal-02352969; ACM TOMS 2024).
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem import Chain
from checkpoint_solver.schedule import Op, Schedule, Status
from checkpoint_solver.solvers._chain import CHAIN, Decision, emit_plan
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._options import SolverOptions, bool_option, int_option
from checkpoint_solver.solvers.baseline_plans import Rule, fastest_rule, rule_plans

__all__ = ["Option", "OptionsDP", "least_memory_plan", "min_budget_dp", "solve_dp", "tradeoff_dp"]


@dataclass(frozen=True)
class _Table:
    """``opt[s, t, m]``: Equations (1)-(3) in slots, with the slot sizes used to fill it."""

    opt: npt.NDArray[np.float64]
    x: npt.NDArray[np.int64]  # index j = a[j]
    d: npt.NDArray[np.int64]  # index j = delta[j], the gradient of a[j]
    xbar: npt.NDArray[np.int64]  # index s = stage s (index 0 unused), likewise of, ob, uf, ub
    of: npt.NDArray[np.int64]
    ob: npt.NDArray[np.int64]
    ofn: npt.NDArray[np.int64]  # the forward without tape (F_n, F_ck)
    uf: npt.NDArray[np.float64]
    ub: npt.NDArray[np.float64]
    prefix: npt.NDArray[np.float64]  # prefix[k] = uf[1] + ... + uf[k]
    base: npt.NDArray[np.int64]  # base[k] = x[k-1] + x[k] + ofn[k], what F_n(k) needs
    shifted: npt.NDArray[np.float64]  # scratch, opt's first two axes swapped (see _build)


def _slots(values: Iterable[int], unit: int, up: bool) -> npt.NDArray[np.int64]:
    arr = np.asarray(list(values), dtype=np.int64)
    return -(-arr // unit) if up else arr // unit


def _forward_need(table: _Table, s: int, t: int) -> npt.NDArray[np.int64]:
    """For j = s+1..t: slots F_ck(s), F_n(s+1..j-1) need beside the held gradient (non-decreasing)."""
    need = np.empty(t - s, dtype=np.int64)
    need[0] = table.x[s] + table.ofn[s]
    if t - s > 1:
        need[1:] = np.maximum(need[0], np.maximum.accumulate(table.base[s + 1 : t]))
    return need


Option = tuple[int, float, int, int]  # (xbar, ub, of, ob) of one way to run a stage with tape


def _build(
    chain: Chain,
    unit: int,
    mmax: int,
    up: bool,
    options: list[list[Option]] | None = None,
    reuse: _Table | None = None,
) -> _Table:
    """Fill ``opt`` for every m in 0..mmax (Equations (1)-(3)).

    `reuse` hands over the arrays of a table that is no longer needed (of the same chain and
    size): a second table then costs no new memory (on large chains, first touching the pages of
    a new table costs as much as filling it).

    `options` (per stage, 0-based) replaces the stage's ``(xbar, ub, of, ob)`` in Equation (2) by
    a choice among several (the hierarchical solver's op-level variants of ``F_all``/``B``); the
    chain branch then takes the best option that fits."""
    # Long: the DP's recursion over numpy arrays, the hot path: its loops share the table's arrays
    # and are written out for speed.
    n = chain.length
    pad = np.zeros(1, dtype=np.int64)
    x = _slots(chain.x, unit, up)
    d = _slots(chain.delta, unit, up)
    of = np.concatenate([pad, _slots(chain.of, unit, up)])
    ofn = np.concatenate([pad, _slots(chain.ofn, unit, up)])
    uf = np.concatenate([[0.0], np.asarray(chain.uf, dtype=np.float64)])
    base = np.zeros(n + 1, dtype=np.int64)
    base[1:] = x[:-1] + x[1:] + ofn[1:]
    size = mmax + 1
    shape = (n + 2, n + 1, size)
    if reuse is None or reuse.opt.shape != shape:
        _check_table_memory(n, size)
    # Only entries with t >= s - 1 are ever read, and each is set before it is read: the arrays
    # need no initialisation, and the other half of them is never touched.
    fresh = reuse is None or reuse.opt.shape != shape
    table = _Table(
        opt=np.empty(shape) if fresh else reuse.opt,  # type: ignore[union-attr]
        shifted=np.empty((n + 1, n + 2, size)) if fresh else reuse.shifted,  # type: ignore[union-attr]
        x=x,
        d=d,
        xbar=np.concatenate([pad, _slots(chain.xbar, unit, up)]),
        of=of,
        ob=np.concatenate([pad, _slots(chain.ob, unit, up)]),
        ofn=ofn,
        uf=uf,
        ub=np.concatenate([[0.0], np.asarray(chain.ub, dtype=np.float64)]),
        prefix=np.concatenate([[0.0], np.cumsum(uf[1:])]),
        base=base,
    )
    opt = table.opt
    stage_options = _stage_options(table, options, unit, up)
    for t in range(n + 1):
        opt[t + 1, t, :] = 0.0  # the empty subproblem
    # shifted[t, j] = opt[j, t, m - x[j-1]] + prefix[j-1]: the right part of a leaf at j plus the
    # forward time up to stage j-1 (prefix[s-1] is subtracted after the minimum over j); t first,
    # so the rows a leaf reads are contiguous.
    shifted = table.shifted
    # first[s, t]: the smallest m at which opt[s, t] is finite (size when never).
    first = np.full((n + 2, n + 1), size, dtype=np.int64)
    for t in range(n + 1):
        first[t + 1, t] = 0
    buf = np.empty((max(n, 1), size))
    running = np.empty(size)
    prefix = table.prefix
    # least[t] - least[s-1]: the time of stages s..t without recomputation, which no plan beats.
    least = np.concatenate([[0.0], np.cumsum(uf[1:] + table.ub[1:])])
    # Order: s descending, t ascending. opt[s, t] needs opt[j, t] for j > s (earlier s) and
    # opt[s, j-1] for j - 1 < t (earlier t at this s).
    for s in range(n, 0, -1):
        # Forward need of a leaf at j = s+1..n beside the held gradient: a running maximum, so it
        # takes few distinct values; group the rows j that share one.
        need_all = _forward_need(table, s, n) if n > s else np.zeros(0, dtype=np.int64)
        group_starts = [0, *(np.flatnonzero(need_all[1:] != need_all[:-1]) + 1).tolist()]
        for t in range(s, n + 1):
            g = 0 if t == n else int(d[t])
            row = opt[s, t]
            row[:] = np.inf
            # Equation (2) (Equation (1) when s == t: the inner problem is empty).
            for xb, tb, fo, bo in stage_options[s]:
                need = int(max(g + xb + fo, xb + d[s] + d[s - 1] + bo))
                lo = max(need, xb + int(first[s + 1, t]))
                if lo < size:
                    cand = (uf[s] + tb) + opt[s + 1, t, lo - xb : size - xb]
                    np.minimum(row[lo:], cand, out=row[lo:])
            if t > s:
                # Equation (3) for every j at once; rows are feasible for m >= g + need, so for m
                # in [T_k, T_k+1) the feasible rows are the groups up to k. Columns below every
                # row's first finite value are skipped, and so are those where the chain branch
                # already takes the least time any plan can (no recomputation: a leaf reruns
                # forwards), the saturated columns `_saturated` finds.
                rows = t - s
                col0 = int(np.maximum(first[s, s:t], first[s + 1 : t + 1, t] + x[s:t]).min())
                top = size if options is not None else _saturated(row, least[t] - least[s - 1])
                starts = group_starts[: bisect.bisect_left(group_starts, rows)]
                running[col0:top] = np.inf
                for k, begin in enumerate(starts):
                    low = max(g + int(need_all[begin]), col0)
                    end = starts[k + 1] if k + 1 < len(starts) else rows
                    high = min(g + int(need_all[end]) if end < rows else size, top)
                    if low >= top:
                        break
                    cand = buf[: end - begin, col0:top]
                    np.add(
                        shifted[t, s + 1 + begin : s + 1 + end, col0:top],
                        opt[s, s + begin : s + end, col0:top],
                        out=cand,
                    )
                    np.minimum(running[col0:top], cand.min(axis=0), out=running[col0:top])
                    if high > low:
                        seg = running[low:high] - prefix[s - 1]
                        np.minimum(row[low:high], seg, out=row[low:high])
            finite = np.isfinite(row)
            k = int(finite.argmax())
            first[s, t] = k if finite[k] else size
            by = int(x[s - 1])
            shifted[t, s, : min(by, size)] = np.inf
            if by < size:
                shifted[t, s, by:] = row[: size - by] + prefix[s - 1]
    return table


def _saturated(row: npt.NDArray[np.float64], least: float) -> int:
    """The first column from which `row` (non-increasing in m) is `least`, the time without
    recomputation (within rounding), or the row's length: Equation (3) cannot improve there."""
    return int(np.searchsorted(-row, -least * (1 + 1e-12), side="left"))


def _stage_options(
    table: _Table, options: list[list[Option]] | None, unit: int, up: bool
) -> list[list[tuple[int, float, int, int]]]:
    """Per stage (1-based, index 0 unused) its options in slots: the chain's own by default."""
    n = len(table.xbar) - 1
    if options is None:
        return [[]] + [
            [(int(table.xbar[s]), float(table.ub[s]), int(table.of[s]), int(table.ob[s]))]
            for s in range(1, n + 1)
        ]
    out: list[list[tuple[int, float, int, int]]] = [[]]
    for opts in options:
        row = []
        for xb, tb, fo, bo in opts:
            sl = _slots((xb, fo, bo), unit, up)
            row.append((int(sl[0]), float(tb), int(sl[1]), int(sl[2])))
        out.append(row)
    return out


def _decider(table: _Table, n: int, options: list[list[Option]] | None = None, unit: int = 1):  # type: ignore[no-untyped-def]
    """Recover each branch choice from ``opt`` with the same arithmetic that filled it. With
    options, a chain branch's third element is the option index."""
    opt, x, d = table.opt, table.x, table.d
    stage_options = _stage_options(table, options, unit, True)

    def decide(s: int, t: int, m: int) -> Decision:
        g = 0 if t == n else int(d[t])
        value = opt[s, t, m]
        for k, (xb, tb, fo, bo) in enumerate(stage_options[s]):
            need = max(g + xb + fo, xb + d[s] + d[s - 1] + bo)
            if m >= need and m >= xb:
                chain_value = (table.uf[s] + tb) + opt[s + 1, t, m - xb]
                if chain_value <= value:
                    return (CHAIN, m - xb, None if options is None else k)
        if t > s:
            fwd = g + _forward_need(table, s, t)
            for k, j in enumerate(range(s + 1, t + 1)):
                if fwd[k] > m or m < x[j - 1]:
                    break
                leaf = (
                    (opt[j, t, m - x[j - 1]] + table.prefix[j - 1]) + opt[s, j - 1, m]
                ) - table.prefix[s - 1]
                if leaf <= value:
                    return (j, m - int(x[j - 1]), m)
        raise AssertionError(f"DP table has no plan for stages {s}..{t} with {m} slots")

    return decide


def _min_memory(
    chain: Chain, options: list[list[Option]] | None = None
) -> tuple[int, npt.NDArray[np.int64]]:
    """Exact minimum peak over plans of this form, and the branch choices that reach it.

    With `options` (per stage, 0-based, as `_build` takes them), the chain branch of each stage
    picks the option of least memory; `_min_memory_options` also returns which."""
    return _min_memory_options(chain, options)[:2]


def _min_memory_options(
    chain: Chain, options: list[list[Option]] | None = None
) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    n = chain.length
    x = np.asarray(chain.x, dtype=np.int64)
    d = np.asarray(chain.delta, dtype=np.int64)
    pad = np.zeros(1, dtype=np.int64)
    xbar = np.concatenate([pad, np.asarray(chain.xbar, dtype=np.int64)])
    of = np.concatenate([pad, np.asarray(chain.of, dtype=np.int64)])
    ob = np.concatenate([pad, np.asarray(chain.ob, dtype=np.int64)])
    ofn = np.concatenate([pad, np.asarray(chain.ofn, dtype=np.int64)])
    base = np.zeros(n + 1, dtype=np.int64)
    base[1:] = x[:-1] + x[1:] + ofn[1:]
    mm = np.zeros((n + 2, n + 1), dtype=np.int64)
    choice = np.zeros((n + 2, n + 1), dtype=np.int64)
    picked = np.zeros((n + 2, n + 1), dtype=np.int64)
    for t in range(1, n + 1):
        g = 0 if t == n else int(d[t])
        for s in range(t, 0, -1):
            stage = (
                [(int(xbar[s]), 0.0, int(of[s]), int(ob[s]))] if options is None else options[s - 1]
            )
            branch = [
                max(g + xb + fo, xb + int(mm[s + 1, t]), xb + int(d[s] + d[s - 1]) + bo)
                for xb, _, fo, bo in stage
            ]
            picked[s, t] = int(np.argmin(branch))
            best = branch[picked[s, t]]
            pick = CHAIN
            if t > s:
                fwd_need = np.empty(t - s, dtype=np.int64)
                fwd_need[0] = x[s] + ofn[s]
                if t - s > 1:
                    fwd_need[1:] = np.maximum(fwd_need[0], np.maximum.accumulate(base[s + 1 : t]))
                js = np.arange(s + 1, t + 1)
                leaf = np.maximum(np.maximum(g + fwd_need, x[js - 1] + mm[js, t]), mm[s, js - 1])
                k = int(np.argmin(leaf))
                if leaf[k] < best:
                    best, pick = int(leaf[k]), s + 1 + k
            mm[s, t] = best
            choice[s, t] = pick
    return int(x[0] + mm[1, n]) if n else int(x[0]), choice, picked


def _always_chain(s: int, t: int, state: None) -> Decision:
    return (CHAIN, None, None)


def _min_memory_plan(chain: Chain) -> tuple[list[Op], int, float]:
    _, choice = _min_memory(chain)

    def decide(s: int, t: int, state: None) -> Decision:
        return (int(choice[s, t]), None, None)

    return emit_plan(chain, decide, None)


def available_memory() -> int | None:
    """Bytes of memory available to allocate now (Linux ``MemAvailable``, else physical
    memory), or None when the platform does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def _check_table_memory(n: int, size: int) -> None:
    """Refuse, before allocating, a DP table larger than the memory there is to hold it."""
    need = 2 * 8 * (n + 2) * (n + 1) * size  # two float64 arrays
    have = available_memory()
    if have is not None and need > have * 0.8:
        fits = max(1, int(have * 0.8 // (2 * 8 * (n + 2) * (n + 1))) - 1)
        from checkpoint_solver.units import format_bytes

        raise InvalidOptionError(
            f"the DP table for {size - 1} memory slots on a chain of {n} stages needs "
            f"{format_bytes(need)}, more than the {format_bytes(have)} available here; use "
            f"mem_slots <= {fits} (the default is 500)"
        )


@dataclass(frozen=True)
class DpOptions(SolverOptions):
    """``dp``'s options (see `solve_dp`)."""

    mem_slots: int = 500
    bound: bool = True

    def check(self) -> None:
        int_option("mem_slots", self.mem_slots, hint="(default 500)")
        bool_option("bound", self.bound)


def _unit(chain: Chain, budget_bytes: int, mem_slots: int) -> int:
    return max(1, math.ceil((budget_bytes - chain.x[0]) / mem_slots))


def _schedule_at(
    chain: Chain,
    budget_bytes: int,
    table: _Table,
    unit: int,
    lower: npt.NDArray[np.float64] | None,
    mem_slots: int,
    rules: list[Rule],
    suffix: str = "",
) -> Schedule:
    """The schedule for one budget from a filled table, with its status, bound and gap; one of
    `rules` (torch's rules' plans, `_rules`) where it fits and is faster."""
    store_all_ops, store_all_peak, store_all_time = emit_plan(chain, _always_chain, None)
    bound: float | None = None
    if store_all_peak <= budget_bytes:
        # Rounding sizes up can hide the plan that recomputes nothing; when it fits it is optimal.
        ops, peak, predicted = store_all_ops, store_all_peak, store_all_time
        status, bound, note = Status.OPTIMAL, store_all_time, "no recomputation fits the budget"
    else:
        m = (budget_bytes - chain.x[0]) // unit
        if math.isfinite(table.opt[1, chain.length, m]):
            ops, peak, _ = emit_plan(chain, _decider(table, chain.length), int(m))
            predicted = float(table.opt[1, chain.length, m])
            note = f"memory in {m} slots of {unit} bytes; optimality is among persistent schedules"
        else:
            ops, peak, predicted = _min_memory_plan(chain)
            if peak > budget_bytes:  # below the exact minimum (`min_budget_dp`)
                raise InfeasibleBudgetError(budget_bytes, peak, "dp")
            note = (
                f"the {unit}-byte slot rounding leaves no plan at this budget; returned the "
                f"minimum-memory plan ({peak} bytes)"
            )
        rule = fastest_rule(rules, budget_bytes, predicted)
        if rule is not None:
            ops, peak, predicted = rule
            note += (
                "; a torch rule's plan (per-block or checkpoint_sequential) fits and is faster "
                "than the DP's at this slot rounding: returned"
            )
        if unit == 1 and rule is None:
            status, bound = Status.OPTIMAL, predicted
        else:
            value = float(lower[m]) if lower is not None else math.inf
            bound = value if math.isfinite(value) else None
            exact = bound is not None and predicted <= bound * (1 + 1e-12)
            # FEASIBLE promises a gap: without a bound (bound=False) the DP claims nothing.
            status = (
                Status.OPTIMAL
                if exact
                else Status.FEASIBLE
                if bound is not None
                else Status.HEURISTIC
            )
    gap = 0.0 if status is Status.OPTIMAL else (None if not bound else (predicted - bound) / bound)
    return make_schedule(
        chain,
        budget_bytes,
        ops,
        solver="dp",
        peak_bytes=peak,
        compute_time=predicted,
        options={"mem_slots": mem_slots, "slot_bytes": unit},
        status=status,
        gap=gap,
        lower_bound=bound,
        notes=note + suffix,
    )


def _rules(chain: Chain) -> list[Rule]:
    """Torch's rules' plans (`baseline_plans.rule_plans`), weighed beside the DP's plan: they are in
    its space, so only the slot rounding can make one faster within a budget. Not on a chain
    whose boundaries share values: `checkpoint_solver.solvers._values` weighs them there, at
    the user's budget, while it runs the DP at larger ones."""
    return [] if chain.values else rule_plans(chain)


def solve_dp(
    chain: Chain, budget_bytes: int, /, *, mem_slots: int = 500, bound: bool = True
) -> Schedule:
    """Optimal persistent schedule for a heterogeneous chain (Beaumont et al. 2019).

    Parameters
    ----------
    mem_slots : int
        Memory discretisation (slots for ``budget - x[0]``); sizes are rounded up to slots.
    bound : bool
        Also solve the rounded-down relaxation to report a lower bound and the gap.

    Returns
    -------
    Schedule
        Status ``optimal`` when the discretisation is exact (slot = 1 byte) or the bound meets the
        time; otherwise ``feasible`` with ``gap`` and ``lower_bound``.

    Raises
    ------
    InfeasibleBudgetError
        Below the exact minimum budget (`min_budget_dp`).
    """
    DpOptions(mem_slots=mem_slots, bound=bound)
    if budget_bytes <= chain.x[0] or chain.length == 0:
        # (Otherwise a table with no plan at the budget says so: the minimum is not needed.)
        min_bytes = _min_memory(chain)[0]
        if budget_bytes < min_bytes:
            raise InfeasibleBudgetError(budget_bytes, min_bytes, "dp")
    if chain.length == 0:
        return make_schedule(
            chain,
            budget_bytes,
            [],
            solver="dp",
            peak_bytes=chain.x[0],
            compute_time=0.0,
            options={"mem_slots": mem_slots},
            status=Status.OPTIMAL,
            gap=0.0,
            lower_bound=0.0,
        )
    unit = _unit(chain, budget_bytes, mem_slots)
    mmax = (budget_bytes - chain.x[0]) // unit
    table, lower = _tables(chain, unit, mmax, bound)
    return _schedule_at(chain, budget_bytes, table, unit, lower, mem_slots, _rules(chain))


def _tables(
    chain: Chain, unit: int, mmax: int, bound: bool
) -> tuple[_Table, npt.NDArray[np.float64] | None]:
    """The rounded-up table, and with `bound` the rounded-down relaxation's values
    ``opt[1, L, m]`` (its lower bounds), built first in the same memory."""
    if not (bound and unit > 1):
        return _build(chain, unit, mmax, up=True), None
    relaxed = _build(chain, unit, mmax, up=False)
    lower = relaxed.opt[1, chain.length].copy()
    return _build(chain, unit, mmax, up=True, reuse=relaxed), lower


def min_budget_dp(chain: Chain, /, *, mem_slots: int = 500, bound: bool = True) -> int:
    """Exact minimum peak over the DP's plans, by Equations (1)-(3) with peak in place of time."""
    DpOptions(mem_slots=mem_slots, bound=bound)
    return _min_memory(chain)[0]


def tradeoff_dp(
    chain: Chain, budgets: list[int], /, *, mem_slots: int = 500, bound: bool = True
) -> list[Schedule | None]:
    """Schedules for many budgets from one table (built for the largest budget)."""
    DpOptions(mem_slots=mem_slots, bound=bound)
    min_bytes = _min_memory(chain)[0]
    feasible = [b for b in budgets if b >= min_bytes]
    if not feasible:
        return [None] * len(budgets)
    top = max(feasible)
    unit = _unit(chain, top, mem_slots)
    mmax = (top - chain.x[0]) // unit
    table, lower = _tables(chain, unit, mmax, bound) if chain.length else (None, None)
    out: list[Schedule | None] = []
    rules = _rules(chain)
    for b in budgets:
        if b < min_bytes:
            out.append(None)
            continue
        if table is None:
            out.append(solve_dp(chain, b, mem_slots=mem_slots, bound=bound))
            continue
        suffix = f" (one table for {len(budgets)} budgets)"
        out.append(_schedule_at(chain, b, table, unit, lower, mem_slots, rules, suffix))
    return out


@dataclass(frozen=True)
class OptionsDP:
    """`dp`'s recursion with a choice among options in each stage's chain branch: the DP over
    per-block op-level options (Rockmate's) that `hierarchical` runs.

    Options are per stage (0-based) ``(xbar, ub, of, ob)`` in bytes and the chain's time unit:
    the tape a way of running the stage keeps, its backward time and its two transients. Each
    stage's first option is meant to be its run without recomputation. Memory is counted above
    the input ``a[0]`` (which the caller holds), in slots of `unit` bytes (rounded up), from 0
    to `mmax` slots. Without options this is `dp`'s own table at that discretisation.

    Attributes
    ----------
    chain : Chain
    unit, mmax : int
    options : list[list[Option]] | None
    """

    chain: Chain
    unit: int
    mmax: int
    options: list[list[Option]] | None
    table: _Table

    @classmethod
    def build(
        cls, chain: Chain, unit: int, mmax: int, options: list[list[Option]] | None = None
    ) -> OptionsDP:
        return cls(chain, unit, mmax, options, _build(chain, unit, mmax, True, options))

    @property
    def first(self) -> int | None:
        """The fewest slots with a plan (None: no plan within `mmax`)."""
        finite = np.flatnonzero(np.isfinite(self.table.opt[1, self.chain.length]))
        return int(finite[0]) if finite.size else None

    def plan(self, m: int) -> tuple[list[Op], dict[int, int]]:
        """The chain ops of the fastest plan within `m` slots above the input, and per taped
        stage (1-based) the option it runs under (``m >= first``)."""
        decide = _decider(self.table, self.chain.length, self.options, self.unit)
        picks: dict[int, int] = {}

        def record(s: int, t: int, mm: int) -> Decision:
            code, first, second = decide(s, t, mm)
            if code == CHAIN:  # persistent plans run each stage's chain branch once
                picks[s] = 0 if second is None else second  # 0: the chain's own (no options)
            return code, first, second

        ops, _, _ = emit_plan(self.chain, record, m)
        return ops, picks


def least_memory_plan(
    chain: Chain, options: list[list[Option]] | None = None
) -> tuple[list[Op], dict[int, int]]:
    """The chain ops of the plan of least memory over the DP's plans (its exact minimum-memory
    recursion, in bytes: no slots), and per taped stage (1-based) the option it runs under: the
    one of least memory (0 without options)."""
    _, choice, picked = _min_memory_options(chain, options)
    picks: dict[int, int] = {}

    def decide(s: int, t: int, state: None) -> Decision:
        code = int(choice[s, t])
        if code == CHAIN:
            picks[s] = int(picked[s, t])
        return (code, None, None)

    ops, _, _ = emit_plan(chain, decide, None)
    return ops, picks
