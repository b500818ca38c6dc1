"""``uniform`` and ``sqrt``: periodic checkpointing of chains.

``uniform`` has the semantics of ``torch.utils.checkpoint.checkpoint_sequential(functions, k)``:
with ``s = L // k``, the first ``k - 1`` segments of ``s`` stages are checkpointed (only their input
is kept; they are recomputed with tape during the backward) and the last segment, with the
remainder, runs with tape. ``sqrt`` is Chen et al. (2016): ``k = round(sqrt(L))`` segments.

References
----------
T. Chen, B. Xu, C. Zhang, C. Guestrin, "Training Deep Nets with Sublinear Memory Cost", 2016.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem import Chain
from checkpoint_solver.schedule import Bwd, FwdCheckpoint, FwdNoTape, FwdTape, Op, Schedule
from checkpoint_solver.solvers._common import make_schedule
from checkpoint_solver.solvers._options import SolverOptions, int_option

__all__ = [
    "min_budget_sqrt",
    "min_budget_uniform",
    "segments_plan",
    "solve_sqrt",
    "solve_uniform",
]


def _segments(length: int, k: int) -> list[tuple[int, int]]:
    """1-based inclusive stage ranges: ``k - 1`` segments of ``L // k`` stages, then the rest."""
    size = length // k
    segs = [(j * size + 1, (j + 1) * size) for j in range(k - 1)]
    segs.append(((k - 1) * size + 1, length))
    return segs


def segments_plan(chain: Chain, k: int) -> tuple[list[Op], int, float]:
    """Ops, predicted peak bytes and predicted time of `k`-segment periodic checkpointing."""
    n, x, xbar, of, ob, ofn = chain.length, chain.x, chain.xbar, chain.of, chain.ob, chain.ofn
    d = chain.delta
    if n == 0:
        return [], x[0], 0.0
    segs = _segments(n, k)
    ops: list[Op] = []
    peak = x[0]
    kept = 0  # bytes of the inputs kept by the checkpointed segments before the current one
    for s, e in segs[:-1]:
        # F_ck(s) keeps a[s-1]; F_n walks the segment holding one activation at a time.
        ops.append(FwdCheckpoint(s))
        peak = max(peak, kept + x[s - 1] + x[s] + ofn[s - 1])
        for i in range(s + 1, e + 1):
            ops.append(FwdNoTape(i))
            peak = max(peak, kept + x[s - 1] + x[i - 1] + x[i] + ofn[i - 1])
        kept += x[s - 1]
    recompute = 0.0
    # Backward: the last segment runs with tape; each earlier one is recomputed from its input.
    for j in range(len(segs) - 1, -1, -1):
        s, e = segs[j]
        if j < len(segs) - 1:
            kept -= x[s - 1]
            recompute += math.fsum(chain.uf[s - 1 : e])
        grad_in = d[e]  # delta[e]: the seed for j = last (created by B(L)), else made by B(e+1)
        tapes = 0
        for i in range(s, e + 1):
            ops.append(FwdTape(i))
            tapes += xbar[i - 1]
            held_grad = grad_in if j < len(segs) - 1 else 0
            peak = max(peak, kept + x[s - 1] + held_grad + tapes + of[i - 1])
        for i in range(e, s - 1, -1):
            ops.append(Bwd(i))
            peak = max(peak, kept + x[s - 1] + tapes + d[i] + d[i - 1] + ob[i - 1])
            tapes -= xbar[i - 1]
    return ops, peak, chain.store_all_time + recompute


def _check_segments(chain: Chain, segments: int) -> None:
    """The chain's range for `segments` (an integer >= 1: `UniformOptions` checked it)."""
    if segments > max(chain.length, 1):
        raise InvalidOptionError(
            f"segments={segments!r} is not valid for a chain of {chain.length} stages; "
            f"give an integer in 1..{max(chain.length, 1)}, or leave it unset to pick the best"
        )


@dataclass(frozen=True)
class UniformOptions(SolverOptions):
    """``uniform``'s options (see `solve_uniform`); the range of `segments` depends on the
    chain, so `_candidates` checks it against the chain too."""

    segments: int | None = None

    def check(self) -> None:
        int_option(
            "segments", self.segments, allow_none=True, hint="(unset: the fastest count that fits)"
        )


def _candidates(chain: Chain, segments: int | None) -> list[int]:
    UniformOptions(segments)
    if segments is not None:
        _check_segments(chain, segments)
        return [segments]
    return list(range(1, max(chain.length, 1) + 1))


def solve_uniform(chain: Chain, budget_bytes: int, /, *, segments: int | None = None) -> Schedule:
    """``checkpoint_sequential`` with `segments` segments, or the fastest count that fits.

    Parameters
    ----------
    segments : int | None
        Number of segments ``k`` (1..L). ``None`` tries every ``k`` and keeps the one with the least
        compute time whose peak fits (ties: the lower peak).

    Raises
    ------
    InfeasibleBudgetError
        When no candidate fits; ``min_budget_bytes`` is the lowest candidate peak.
    """
    best: tuple[float, int, int, list[Op]] | None = None
    lowest = None
    for k in _candidates(chain, segments):
        ops, peak, time = segments_plan(chain, k)
        lowest = peak if lowest is None else min(lowest, peak)
        if peak <= budget_bytes and (best is None or (time, peak) < (best[0], best[1])):
            best = (time, peak, k, ops)
    if best is None:
        raise InfeasibleBudgetError(
            budget_bytes, lowest, "uniform", hint="or use dp, which needs less memory"
        )
    time, peak, k, ops = best
    return make_schedule(
        chain,
        budget_bytes,
        ops,
        solver="uniform",
        peak_bytes=peak,
        compute_time=time,
        options={"segments": k},
        notes="" if segments is not None else f"picked segments={k}, the fastest that fits",
    )


def min_budget_uniform(chain: Chain, /, *, segments: int | None = None) -> int:
    """The lowest peak over the candidate segment counts."""
    return min(segments_plan(chain, k)[1] for k in _candidates(chain, segments))


def _sqrt_k(chain: Chain) -> int:
    return max(1, round(math.sqrt(chain.length)))


def solve_sqrt(chain: Chain, budget_bytes: int, /) -> Schedule:
    """Chen et al.'s sqrt(L) rule: ``round(sqrt(L))`` equal segments, each but the last checkpointed."""
    k = _sqrt_k(chain)
    ops, peak, time = segments_plan(chain, k)
    if peak > budget_bytes:
        raise InfeasibleBudgetError(
            budget_bytes, peak, "sqrt", hint="or use dp, which needs less memory"
        )
    return make_schedule(
        chain,
        budget_bytes,
        ops,
        solver="sqrt",
        peak_bytes=peak,
        compute_time=time,
        options={"segments": k},
    )


def min_budget_sqrt(chain: Chain, /) -> int:
    """The peak of the sqrt(L) schedule."""
    return segments_plan(chain, _sqrt_k(chain))[1]
