"""Offload in Checkmate's MILP: a value kept on the device may instead wait in host memory.

Added to `checkpoint_solver.solvers._milp.formulation`'s model, over the values that can wait
(op nodes with a reader two stages or more after the next, ``candidates``), with stages ``t``
as there:

- ``O[t, i]`` (binary): the value of i, carried into stage t (``S[t, i]``), is copied to the host
  from the stage's start and dropped on the device after its last use in the stage (``O[t, i] <=
  S[t, i]``, ``O[t, i] + S[t+1, i] <= 1``);
- ``P[t, i]`` (binary): its host copy is brought back from the stage's start; its device memory is
  taken at once (the memory row of stage t's start gains ``M_i P[t, i]``), nothing reads it in
  stage t, it is kept into stage t+1 (retention becomes ``S[t+1, i] <= S[t, i] + R[t, i] + P[t,
  i]``, and ``P[t, i] <= S[t+1, i]``), and a node of stage t+1 reads it, so the host copy is
  released then, as the simulator releases it;
- ``H[t, i]`` (continuous, exact as ``F`` is): a host copy exists at stage t's start: ``H[t, i]
  <= H[t-1, i] + O[t-1, i] - P[t-1, i]``, ``P[t, i] <= H[t, i]``, ``O[t, i] + H[t, i] <= 1``;
  with a host budget, ``sum_i M_i (H[t, i] + O[t, i]) <= host budget`` at every stage;
- ``W[t]`` (continuous): the wait of stage t, at least each direction's copy time in the stage
  less the stage's compute, ``W[t] >= sum_i b_i O[t, i] / d2h - sum_k C_k R[t, k]`` (and the
  same for ``P`` over h2d); the objective gains ``sum_t W[t]``.
- Usefulness: a value carried into (or computed in) stage t may also be there to be offloaded.

**The copy model** (what "optimal" means for this MILP): each stage's copies run beside that
stage's compute, one stream per direction; the stage waits when they take longer. The simulator,
which times the schedule that comes out, is stricter: an offload's copy must end by the value's
free in the stage, and a stream's copies queue across stages. So the MILP's objective is its own
prediction; the schedule's predicted time is the simulator's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from checkpoint_solver.schedule import HostLink, OffloadValue, Op, PrefetchValue
from checkpoint_solver.solvers._milp.formulation import MilpModel
from checkpoint_solver.solvers._plans import BoolMatrix, OpGraph, plan_ops

__all__ = ["OffloadColumns", "add_offload", "candidates", "offload_plan_ops"]


@dataclass
class OffloadColumns:
    """The offload columns added to a `MilpModel`."""

    o_col: dict[tuple[int, int], int] = field(default_factory=dict)
    p_col: dict[tuple[int, int], int] = field(default_factory=dict)
    h_col: dict[tuple[int, int], int] = field(default_factory=dict)
    w_col: dict[int, int] = field(default_factory=dict)

    def chosen(self, x: np.ndarray, n: int) -> tuple[BoolMatrix, BoolMatrix]:
        """``(O, P)`` of a solution vector."""
        O = np.zeros((n, n), dtype=bool)
        P = np.zeros((n, n), dtype=bool)
        for (t, i), c in self.o_col.items():
            O[t, i] = x[c] > 0.5
        for (t, i), c in self.p_col.items():
            P[t, i] = x[c] > 0.5
        return O, P


def candidates(g: OpGraph) -> dict[int, int]:
    """Values that can wait on the host, each with its last reader: offloaded in a stage after
    the one that computes it, prefetched a stage later or more, read in the stage after that."""
    out = {}
    for i in range(g.n):
        last = max(g.users[i], default=i)
        if g.size[i] > 0 and last >= i + 3:
            out[i] = last
    return out


def _append(model: MilpModel, row: int | None, col: int, val: float) -> None:
    if row is not None:
        model.rows[row][0].append(col)
        model.rows[row][1].append(val)


def add_offload(model: MilpModel, g: OpGraph, link: HostLink) -> OffloadColumns:
    """Add the offload columns and rows (module docstring) to `model`, built for `g`."""
    # Long: one block per constraint family, as the module docstring lists them.
    n, m, scale = g.n, model._sizes, model.scale
    cols = OffloadColumns()
    R, S = model.r_col, model.s_col
    for i, last in candidates(g).items():
        for t in range(i + 1, last - 1):
            cols.o_col[t, i] = model.add_col(0.0, 1.0, True)
        for t in range(i + 2, last):
            cols.p_col[t, i] = model.add_col(0.0, 1.0, True)
            cols.h_col[t, i] = model.add_col(0.0, 1.0, False)
    O, P, H = cols.o_col, cols.p_col, cols.h_col
    for (t, i), o in O.items():
        model.add_row([o, S[t, i]], [1.0, -1.0], -np.inf, 0.0)
        model.add_row([o, S[t + 1, i]], [1.0, 1.0], -np.inf, 1.0)
        if (t, i) in H:
            model.add_row([o, H[t, i]], [1.0, 1.0], -np.inf, 1.0)
        for which in ("R", "S"):
            _append(model, model.useful_row.get((t, i, which)), o, -1.0)
    for (t, i), p in P.items():
        h = H[t, i]
        # the host copy: made by an offload before, not yet brought back
        prev = [(H[t - 1, i], -1.0)] if (t - 1, i) in H else []
        prev += [(O[t - 1, i], -1.0)] if (t - 1, i) in O else []
        prev += [(P[t - 1, i], 1.0)] if (t - 1, i) in P else []
        model.add_row([h] + [c for c, _ in prev], [1.0] + [v for _, v in prev], -np.inf, 0.0)
        model.add_row([p, h], [1.0, -1.0], -np.inf, 0.0)
        _append(model, model.keep_row.get((t + 1, i)), p, -1.0)
        _append(model, model.once_row.get((t, i)), p, 1.0)
        model.add_row([p, S[t + 1, i]], [1.0, -1.0], -np.inf, 0.0)
        readers = [R[t + 1, j] for j in g.users[i] if j <= t + 1]
        model.add_row([p, *readers], [1.0] + [-1.0] * len(readers), -np.inf, 0.0)
        _append(model, model.start_row.get(t), p, -float(m[i]))
    if link.host_budget_bytes is not None:
        host_units = link.host_budget_bytes // scale
        for t in range(n):
            terms = [(c, float(m[i])) for (s, i), c in (*H.items(), *O.items()) if s == t]
            if terms:
                model.add_row([c for c, _ in terms], [v for _, v in terms], -np.inf, host_units)
    for t in range(n):
        moves = [("d2h", c, i) for (s, i), c in O.items() if s == t]
        moves += [("h2d", c, i) for (s, i), c in P.items() if s == t]
        if not moves:
            continue
        cols.w_col[t] = w = model.add_col(0.0, np.inf, False, 1.0)
        compute = [(R[t, k], float(g.cost[k])) for k in range(t + 1)]
        for direction in ("d2h", "h2d"):
            copies = [
                (c, -link.seconds(int(g.size[i]), direction)) for d, c, i in moves if d == direction
            ]
            if copies:
                terms = [(w, 1.0), *copies, *compute]
                model.add_row([c for c, _ in terms], [v for _, v in terms], 0.0, np.inf)
    return cols


def offload_plan_ops(
    g: OpGraph, R: BoolMatrix, S: BoolMatrix, O: BoolMatrix, P: BoolMatrix
) -> list[Op]:
    """`checkpoint_solver.solvers._plans.plan_ops` with each stage's prefetches and offloads
    issued at its start; an offload no prefetch follows is left out (it would only copy)."""
    O = O.copy()
    for t, i in zip(*np.nonzero(O), strict=True):
        later = [s for s in range(t + 1, g.n) if P[s, i] or O[s, i]]
        if not later or not P[later[0], i]:
            O[t, i] = False

    def starts(t: int) -> list[Op]:
        return [
            *(PrefetchValue(g.nodes[i]) for i in np.flatnonzero(P[t])),
            *(OffloadValue(g.nodes[i]) for i in np.flatnonzero(O[t])),
        ]

    return plan_ops(g, R, S, starts)
