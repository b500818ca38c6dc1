"""``dp-offload``: the chain DP with a third choice for a checkpoint: keep it, or move it to host
memory while the part of the chain after it runs, and bring it back before it is needed.

The recursion is `checkpoint_solver.solvers.dp`'s (Beaumont et al. 2019), with a flag ``p`` on a
subproblem: its input ``a[s-1]`` is a plain checkpoint a leaf kept (so it may be offloaded; the
model input ``a[0]`` and a boundary inside a tape may not). Besides the chain branch and the
leaf branch at ``j``, a subproblem with ``p`` has an **offload leaf at j**::

    offload(a[s-1]), F_ck(s), F_n(s+1..j-1),     the copy beside F_ck(s), then a[s-1] leaves
    stages j..t with m + x[s-1] - x[j-1],       a[s-1]'s memory is theirs ...
    prefetch(a[s-1]) before their last op B(j), ... but for B(j), beside which it comes back
    stages s..j-1 from a[s-1] again

    Lo_j(s, t, m) = sum(uf[s..j-1]) + wait_d2h(s) + Opt(j, t, m + x[s-1] - x[j-1])
                    + wait_h2d(s, j) + Opt(s, j-1, m)
    if m >= (the leaf's forward need) and B(j)'s peak <= m - x[j-1]

with ``wait_d2h(s) = max(0, x[s-1] / d2h - uf[s])`` and ``wait_h2d(s, j) = max(0, x[s-1] / h2d -
ub[j])``: a copy runs beside the one op after it (the simulator's rules,
`checkpoint_solver.simulation`), and the recursion never issues two copies before one op. The
Unsloth-style plan (every block input offloaded, every block recomputed) is in this space.

**What "optimal" means here.** Within persistent schedules whose offloads are those of leaf
inputs as above, at the memory discretisation, with the host memory unbounded: the least step
time (compute plus waits for copies). A link's host budget is met afterwards: while the plan's
host peak is over it, the largest offloaded boundary is kept on the device instead and the DP
runs again (no optimality claim then). The plain ``dp``'s schedule at the same budget is weighed
too, so the result is never predicted slower than ``dp``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem import Chain
from checkpoint_solver.schedule import (
    Bwd,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
    HostLink,
    Offload,
    Op,
    Prefetch,
    Schedule,
    Status,
)
from checkpoint_solver.solvers._options import SolverOptions, int_option
from checkpoint_solver.solvers.dp import Option
from checkpoint_solver.solvers.dp import _slots as dp_slots

__all__ = ["OffloadOptions", "OffloadTable", "min_budget_dp_offload", "solve_dp_offload"]


@dataclass(frozen=True)
class OffloadOptions(SolverOptions):
    """``dp-offload``'s options (see `solve_dp_offload`)."""

    link: HostLink | None = None
    mem_slots: int = 200

    def check(self) -> None:
        if not isinstance(self.link, HostLink):
            raise InvalidOptionError(
                f"link={self.link!r}: dp-offload needs the host link to copy over, e.g. "
                f"link=cs.HostLink.gbps(25) (25 GB/s each way), or the profile's measured one"
            )
        int_option("mem_slots", self.mem_slots, hint="(default 200)")


def _slots(values: Any, unit: int) -> npt.NDArray[np.int64]:
    return dp_slots(values, unit, True)


@dataclass
class _Table:
    opt: npt.NDArray[np.float64]  # [p, s, t, m]
    choice: npt.NDArray[np.int64]  # 0 chain, j leaf at j, -j offload leaf at j
    option: npt.NDArray[np.int64]  # the chain branch's option (index into the stage's options)
    xbar: list[list[int]]  # per stage (1-based), each option's tape in slots


def _build(
    chain: Chain,
    link: HostLink,
    unit: int,
    size: int,
    allowed: frozenset[int],
    options: list[list[Option]] | None = None,
) -> _Table:
    """Fill ``opt[p, s, t, m]`` for m in 0..size-1 (slots of `unit` bytes, sizes rounded up);
    offload leaves only for inputs ``a[s-1]`` with ``s - 1`` in `allowed`. `options` (per stage,
    0-based; `hierarchical`'s op-level variants) replace a stage's own ``(xbar, ub, of, ob)`` in
    the chain branch by the best of several, as in `checkpoint_solver.solvers.dp`."""
    # Long: the recursion's three branches over numpy rows, kept together as the equations are.
    n = chain.length
    x = _slots(chain.x, unit)
    d = _slots(chain.delta, unit)
    pad = np.zeros(1, dtype=np.int64)
    ofn = np.concatenate([pad, _slots(chain.ofn, unit)])
    uf = np.concatenate([[0.0], np.asarray(chain.uf, dtype=np.float64)])
    ub = np.concatenate([[0.0], np.asarray(chain.ub, dtype=np.float64)])
    prefix = np.concatenate([[0.0], np.cumsum(uf[1:])])
    stage_options: list[list[tuple[int, float, int, int]]] = [[]]
    for k in range(n):
        raw = (
            [(chain.xbar[k], chain.ub[k], chain.of[k], chain.ob[k])]
            if options is None
            else options[k]
        )
        stage_options.append(
            [
                (int(-(-xb // unit)), float(tb), int(-(-fo // unit)), int(-(-bo // unit)))
                for xb, tb, fo, bo in raw
            ]
        )
    peak_b = np.zeros(n + 1, dtype=np.int64)  # B(j)'s peak inside its subproblem (any option)
    for j in range(1, n + 1):
        peak_b[j] = max(xb + d[j] + d[j - 1] + bo for xb, _, _, bo in stage_options[j])
    opt = np.full((2, n + 2, n + 1, size), np.inf)
    choice = np.zeros((2, n + 2, n + 1, size), dtype=np.int64)
    option = np.zeros((2, n + 2, n + 1, size), dtype=np.int64)
    for t in range(n + 1):
        opt[:, t + 1, t, :] = 0.0
    ms = np.arange(size)
    for s in range(n, 0, -1):
        for t in range(s, n + 1):
            g = 0 if t == n else int(d[t])
            for p in (0, 1):
                row, pick, which = opt[p, s, t], choice[p, s, t], option[p, s, t]
                for k, (xb, tb, fo, bo) in enumerate(stage_options[s]):
                    need = int(max(g + xb + fo, xb + d[s] + d[s - 1] + bo))
                    lo = max(need, xb)
                    if lo < size:
                        cand = np.full(size, np.inf)
                        cand[lo:] = uf[s] + tb + opt[0, s + 1, t, lo - xb : size - xb]
                        better = cand < row
                        row[better], pick[better], which[better] = cand[better], 0, k
                fwd = int(x[s] + ofn[s])
                for j in range(s + 1, t + 1):
                    if j > s + 1:
                        fwd = max(fwd, int(x[j - 2] + x[j - 1] + ofn[j - 1]))
                    lo = max(g + fwd, int(x[j - 1]))
                    if lo >= size:
                        break
                    forward = prefix[j - 1] - prefix[s - 1]
                    cand = np.full(size, np.inf)
                    cand[lo:] = (
                        forward
                        + opt[1, j, t, lo - x[j - 1] : size - x[j - 1]]
                        + opt[p, s, j - 1, lo:]
                    )
                    better = cand < row
                    row[better], pick[better] = cand[better], j
                    if p == 0 or s - 1 not in allowed:
                        continue
                    # The offload leaf: a[s-1] on the host while stages j..t run.
                    lo_off = max(lo, int(peak_b[j] + x[j - 1]))
                    if lo_off >= size:
                        continue
                    mm = ms[lo_off:]
                    right = np.minimum(mm + x[s - 1] - x[j - 1], size - 1)
                    bytes_back = chain.x[s - 1]
                    waits = max(0.0, link.seconds(bytes_back, "d2h") - uf[s]) + max(
                        0.0, link.seconds(bytes_back, "h2d") - ub[j]
                    )
                    cand = np.full(size, np.inf)
                    cand[lo_off:] = forward + waits + opt[1, j, t, right] + opt[p, s, j - 1, mm]
                    better = cand < row
                    row[better], pick[better] = cand[better], -j
            # rows are non-increasing in m: more memory never hurts
            for p in (0, 1):
                np.minimum.accumulate(opt[p, s, t], out=opt[p, s, t])
    return _Table(opt, choice, option, [[o[0] for o in so] for so in stage_options])


def _emit(chain: Chain, table: _Table, unit: int, m: int) -> tuple[list[Op], dict[int, int]]:
    """The ops of the plan ``opt[0, 1, L, m]`` describes, and each taped stage's option."""
    x = _slots(chain.x, unit)
    picks: dict[int, int] = {}

    def solve(s: int, t: int, m: int, p: int) -> list[Op]:
        if s > t:
            return []
        # The row was made non-increasing: find the least m' <= m with the same value.
        row = table.opt[p, s, t]
        m = int(np.searchsorted(-row[: m + 1], -row[m], side="left"))
        code = int(table.choice[p, s, t, m])
        if code == 0:
            k = int(table.option[p, s, t, m])
            picks[s] = k
            return [FwdTape(s), *solve(s + 1, t, m - table.xbar[s][k], 0), Bwd(s)]
        j = abs(code)
        forward: list[Op] = [FwdCheckpoint(s), *(FwdNoTape(k) for k in range(s + 1, j))]
        if code > 0:
            right = solve(j, t, m - int(x[j - 1]), 1)
            return [*forward, *right, *solve(s, j - 1, m, p)]
        right = solve(j, t, min(m + int(x[s - 1]) - int(x[j - 1]), row.shape[0] - 1), 1)
        return [
            Offload(s - 1),
            *forward,
            *right[:-1],
            Prefetch(s - 1),
            right[-1],
            *solve(s, j - 1, m, p),
        ]

    return solve(1, chain.length, m, 0), picks


def _plan(
    chain: Chain, budget_bytes: int, link: HostLink, mem_slots: int, allowed: frozenset[int]
) -> list[Op] | None:
    unit = max(1, math.ceil((budget_bytes - chain.x[0]) / mem_slots))
    mmax = (budget_bytes - chain.x[0]) // unit
    if mmax < 0:
        return None
    table = _build(chain, link, unit, int(mmax) + 1, allowed)
    if not math.isfinite(table.opt[0, 1, chain.length, mmax]):
        return None
    return _emit(chain, table, unit, int(mmax))[0]


def solve_dp_offload(
    chain: Chain, budget_bytes: int, /, *, link: HostLink | None = None, mem_slots: int = 200
) -> Schedule:
    """The fastest persistent schedule that keeps, recomputes or offloads each checkpoint.

    Parameters
    ----------
    link : HostLink
        The device-host link (bandwidth each way) and the host memory budget.
    mem_slots : int
        Memory discretisation of ``budget - x[0]`` (sizes rounded up; default 200).

    Raises
    ------
    InfeasibleBudgetError
        Below the least budget (`min_budget_dp_offload`).
    """
    from checkpoint_solver.simulation import simulate_ops
    from checkpoint_solver.solvers._common import make_schedule
    from checkpoint_solver.solvers.dp import solve_dp

    OffloadOptions(link=link, mem_slots=mem_slots)
    assert link is not None
    candidates: list[tuple[float, list[Op], int, str]] = []
    try:
        plain = solve_dp(chain, budget_bytes, mem_slots=max(mem_slots, 500))
        candidates.append((plain.predicted.compute_time, list(plain.ops), 0, "dp's schedule"))
    except InfeasibleBudgetError:
        pass
    allowed = frozenset(range(1, chain.length))
    note = ""
    while True:
        ops = _plan(chain, budget_bytes, link, mem_slots, allowed)
        if ops is None:
            break
        report = simulate_ops(chain, ops, link=link)
        if not report.valid:
            break
        limit = link.host_budget_bytes
        offloaded = sorted({op.index for op in ops if isinstance(op, Offload)})
        if limit is None or (report.host_peak_bytes or 0) <= limit or not offloaded:
            if report.peak_bytes <= budget_bytes:
                candidates.append((report.step_time, ops, len(offloaded), note))
            break
        # Over the host budget: keep the largest offloaded boundary on the device instead.
        biggest = max(offloaded, key=lambda j: chain.x[j])
        allowed = allowed - {biggest}
        note = "; boundaries kept on the device to meet the host budget (no optimality claim)"
    if not candidates:
        raise InfeasibleBudgetError(
            budget_bytes, min_budget_dp_offload(chain, link=link, mem_slots=mem_slots), "dp-offload"
        )
    _, ops, count, why = min(candidates, key=lambda c: (c[0], c[2]))
    report = simulate_ops(chain, ops, link=link)
    if why == "dp's schedule":
        notes = "no offload is faster at this budget and link: dp's schedule"
    else:
        notes = (
            f"{count} boundaries offloaded; optimal among persistent schedules offloading leaf "
            f"inputs, copies beside one op, at {mem_slots} memory slots" + why
        )
    return make_schedule(
        chain,
        budget_bytes,
        ops,
        solver="dp-offload",
        peak_bytes=report.peak_bytes,
        compute_time=report.compute_time,
        options={"mem_slots": mem_slots},
        status=Status.HEURISTIC,
        notes=notes,
        link=link,
    )


def min_budget_dp_offload(
    chain: Chain, /, *, link: HostLink | None = None, mem_slots: int = 200
) -> int:
    """The least budget `solve_dp_offload` meets: ``dp``'s minimum, or lower where an offload
    plan fits below it (a search over budgets)."""
    from checkpoint_solver.simulation import simulate_ops
    from checkpoint_solver.solvers.dp import min_budget_dp

    OffloadOptions(link=link, mem_slots=mem_slots)
    assert link is not None
    high = min_budget_dp(chain)
    low = chain.x[0] + 1
    # The least budget at which an offload plan fits: bisect the budget the DP is run at (more
    # memory lets the DP keep what it kept; slot rounding makes this a heuristic's minimum).
    while low < high:
        mid = (low + high) // 2
        ops = _plan(chain, mid, link, mem_slots, frozenset(range(1, chain.length)))
        report = simulate_ops(chain, ops, link=link) if ops is not None else None
        if report is not None and report.valid and report.peak_bytes <= mid:
            high = mid
        else:
            low = mid + 1
    return high


class OffloadTable:
    """The offload recursion over a whole memory axis with per-stage options, for
    `checkpoint_solver.solvers.hierarchical`: ``plan(m)`` is the chain plan at ``m`` slots (above
    ``x[0]``) and each taped stage's option, or None where none fits."""

    def __init__(
        self, chain: Chain, link: HostLink, unit: int, mmax: int, options: list[list[Option]]
    ) -> None:
        self.chain, self.unit = chain, unit
        self.table = _build(chain, link, unit, mmax + 1, frozenset(range(1, chain.length)), options)
        finite = np.isfinite(self.table.opt[0, 1, chain.length])
        self.first = int(finite.argmax()) if finite.any() else None

    def plan(self, m: int) -> tuple[list[Op], dict[int, int]] | None:
        if self.first is None or m < self.first:
            return None
        return _emit(self.chain, self.table, self.unit, m)
