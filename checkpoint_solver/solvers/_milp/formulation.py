"""Checkmate's MILP (Jain et al., MLSys 2020), built once as sparse matrices, solved by HiGHS or CBC.

Variables, over op nodes numbered in topological order and stages ``t = 0..n-1`` (frontier
advancing: stage t computes node t for the first time):

- ``R[t, i]`` (i <= t) node i computed in stage t; ``R[t, t] = 1``;
- ``S[t, i]`` (i < t) output of i kept from stage t-1 into t;
- ``F[t, i, k]`` (k a user of i, or i itself; i <= k <= t) output of i freed right after k;
- ``U[t, k]`` (continuous) memory while computing k in stage t.

Constraints (numbers follow Checkmate's paper):

1. dependencies ``R[t, j] <= R[t, i] + S[t, i]`` for every edge (i, j);
2. retention ``S[t+1, i] <= S[t, i] + R[t, i]``;
3. never recompute a kept value ``R[t, i] + S[t, i] <= 1``; random ops without a saved RNG state
   are never recomputed (``R[t, i] = 0`` for ``t > i``);
4. ``F[t, i, k] <= R[t, k]``, ``F[t, i, k] <= 1 - S[t+1, i]`` and ``F[t, i, k] <= 1 - R[t, j]`` for
   every later use j of i in the stage: a value may be freed only after its last use when it is
   not kept (Checkmate's product form, without the rows that force the free: freeing only lowers
   memory, and the schedule built from R and S frees whenever it can);
5. ``U[t, 0] = sum_i M_i S[t, i] + M_0 R[t, 0]``, ``U[t, k] = U[t, k-1] + M_k R[t, k] -
   sum_i M_i F[t, i, k-1]``, ``U[t, k] <= budget``.

``F`` is continuous, not binary as in the paper. That is exact: for binary R and S each ``F[t, i,
k]`` is bounded above by 0/1 values, so its largest feasible value is 0 or 1, and a larger F only
lowers U, so any binary (R, S) that fits with some fractional F fits with F rounded up to those
bounds, which is exactly the free-after-last-use rule `plan_peak` applies. Measured on HiGHS 1.x, 2
cores (whole solve, proven optimal, same objective): VGG16 at 90 % 0.90 -> 0.33 s, VGG19 at 90/80 %
1.03/1.40 -> 0.54/0.61 s, FCN8 7.6/9.0 -> 6.6/5.9 s, MobileNet 36/44 -> 9.5/8.5 s.

Objective: ``min sum C_i R[t, i]``. Memory is divided by the gcd of the sizes (Checkmate's
``ram_gcd``), so the data stay exact integers.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from checkpoint_solver.solvers._deadline import Deadline
from checkpoint_solver.solvers._plans import BoolMatrix, OpGraph

__all__ = ["MilpModel", "MilpResult", "MilpStatus", "build"]


@dataclass
class MilpModel:
    """The MILP in matrix form with the column index of every R and S variable."""

    n: int
    cost: npt.NDArray[np.float64]
    rows: list[tuple[list[int], list[float], float, float]] = field(default_factory=list)
    col_lo: list[float] = field(default_factory=list)
    col_hi: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    obj: list[float] = field(default_factory=list)
    r_col: dict[tuple[int, int], int] = field(default_factory=dict)
    s_col: dict[tuple[int, int], int] = field(default_factory=dict)
    f_col: dict[tuple[int, int, int], int] = field(default_factory=dict)
    u_col: dict[tuple[int, int], int] = field(default_factory=dict)
    scale: int = 1
    budget_units: int = 0
    extra_units: dict[tuple[int, int], int] = field(default_factory=dict)
    # Rows the offload extension (`checkpoint_solver.solvers._milp.offload`) adds terms to:
    # retention of i into stage t, "not both computed and kept" of (t, i), usefulness of R[t, i]
    # and S[t, i], and the memory at stage t's start.
    keep_row: dict[tuple[int, int], int] = field(default_factory=dict)
    once_row: dict[tuple[int, int], int] = field(default_factory=dict)
    useful_row: dict[tuple[int, int, str], int] = field(default_factory=dict)
    start_row: dict[int, int] = field(default_factory=dict)

    def add_col(self, lo: float, hi: float, integer: bool, obj: float = 0.0) -> int:
        self.col_lo.append(lo)
        self.col_hi.append(hi)
        self.integer.append(integer)
        self.obj.append(obj)
        return len(self.col_lo) - 1

    def add_row(self, cols: list[int], vals: list[float], lo: float, hi: float) -> None:
        self.rows.append((cols, vals, lo, hi))

    def matrix(self) -> sparse.csc_matrix:
        lengths = np.fromiter((len(r[0]) for r in self.rows), dtype=np.int64, count=len(self.rows))
        ri = np.repeat(np.arange(len(self.rows), dtype=np.int64), lengths)
        ci = np.fromiter(
            itertools.chain.from_iterable(r[0] for r in self.rows),
            dtype=np.int64,
            count=int(lengths.sum()),
        )
        data = np.fromiter(
            itertools.chain.from_iterable(r[1] for r in self.rows),
            dtype=np.float64,
            count=int(lengths.sum()),
        )
        return sparse.csc_matrix((data, (ri, ci)), shape=(len(self.rows), len(self.col_lo)))

    def with_budget_factor(self, factor: float, budget_bytes: int, base_bytes: int) -> MilpModel:
        """The same model at `factor` times its budget (Checkmate's LP "budget factor"), which
        moves only the bounds of the memory columns U; the rows are shared."""
        if self.extra_units:
            raise ValueError("with_budget_factor needs a model built without extra")
        units = _budget_units(budget_bytes, base_bytes, self.scale, factor)
        col_hi = list(self.col_hi)
        for c in self.u_col.values():
            col_hi[c] = float(max(units, 0))
        return dataclasses.replace(self, col_hi=col_hi, budget_units=units)

    def vector(self, R: BoolMatrix, S: BoolMatrix) -> npt.NDArray[np.float64]:
        """A full solution vector for a stage plan (for warm starts)."""
        from checkpoint_solver.solvers._plans import _stage_events

        x = np.zeros(len(self.col_lo))
        for (t, i), c in self.r_col.items():
            x[c] = float(R[t, i])
        for (t, i), c in self.s_col.items():
            x[c] = float(S[t, i])
        sizes = self._sizes
        for t in range(self.n):
            computed, frees, _ = _stage_events(self._graph, R, S, t)
            freed_after = {k: frees[k] for k in computed}
            for k, fr in freed_after.items():
                for i in fr:
                    if (t, i, k) in self.f_col:
                        x[self.f_col[t, i, k]] = 1.0
            mem = float(sum(sizes[i] for i in range(t) if S[t, i]))
            for k in range(t + 1):
                if R[t, k]:
                    mem += sizes[k]
                x[self.u_col[t, k]] = mem
                if R[t, k]:
                    mem -= sum(sizes[i] for i in freed_after[k])
        return x

    _graph: Any = None
    _sizes: Any = None


def _budget_units(budget_bytes: int, base_bytes: int, scale: int, factor: float = 1.0) -> int:
    """Memory units (of `scale` bytes) the op nodes' values may use; -1 when none fit."""
    avail = (budget_bytes - base_bytes) * factor
    return math.floor(avail / scale) if avail >= 0 else -1


def build(
    g: OpGraph,
    budget_bytes: int,
    *,
    usefulness: bool = True,
    extra: Callable[[int, int], int] | None = None,
    deadline: Deadline | None = None,
) -> MilpModel:
    """Build the MILP for op graph `g` under `budget_bytes` (inputs/params already counted in g).

    `extra(t, k)`: bytes beside the op nodes' values while node k runs in stage t (a whole
    step's model states and the parameter gradients made by then: with first computations
    frontier-advancing, a function of the stage alone but for node t itself); the budget of
    ``U[t, k]`` is lowered by it (rounded up to the memory unit)."""
    # Long: the MILP's rows, one block per constraint family in the order Checkmate's paper writes
    # them.
    n = g.n
    sizes = [int(s) for s in g.size]
    scale = reduce(math.gcd, [s for s in sizes if s], 0) or 1
    m = [s // scale for s in sizes]
    budget_units = _budget_units(budget_bytes, g.base_bytes, scale)
    model = MilpModel(n=n, cost=g.cost, scale=scale, budget_units=budget_units)
    model.extra_units = (
        {(t, k): -(-extra(t, k) // scale) for t in range(n) for k in range(t + 1)}
        if extra is not None
        else {}
    )
    model._graph, model._sizes = g, m
    user_sets = [sorted(set(g.users[i]) | {i}) for i in range(n)]
    for t in range(n):
        for i in range(t + 1):
            fixed_one = i == t
            forbid = i < t and bool(g.no_recompute[i])
            lo = 1.0 if fixed_one else 0.0
            hi = 0.0 if forbid else 1.0
            model.r_col[t, i] = model.add_col(lo, hi, True, float(g.cost[i]))
        for i in range(t):
            model.s_col[t, i] = model.add_col(0.0, 1.0, True)
    R, S = model.r_col, model.s_col
    frees_of_stage: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
    for t in range(n):
        for i in range(t + 1):
            for k in user_sets[i]:
                if k <= t:
                    # Continuous: exact (see the module docstring), and a third to a fifth of the
                    # solve time on the Checkmate graphs.
                    model.f_col[t, i, k] = c = model.add_col(0.0, 1.0, False)
                    frees_of_stage[t].append((i, k, c))
        for k in range(t + 1):
            hi = budget_units - model.extra_units.get((t, k), 0)
            model.u_col[t, k] = model.add_col(0.0, float(max(hi, 0)), False)
            if hi < 0:
                model.add_row([model.u_col[t, k]], [1.0], 1.0, np.inf)  # no room at all
    F, U = model.f_col, model.u_col
    for t in range(n):
        if deadline is not None:
            deadline.check()  # OutOfTime: the caller falls back to its heuristic
        # (1) dependencies
        for j in range(t + 1):
            for i in g.preds[j]:
                model.add_row([R[t, j], R[t, i], S[t, i]], [1.0, -1.0, -1.0], -np.inf, 0.0)
        # (2) retention and (3) no recompute of a kept value
        for i in range(t):
            model.once_row[t, i] = len(model.rows)
            model.add_row([R[t, i], S[t, i]], [1.0, 1.0], -np.inf, 1.0)
            if t + 1 < n:
                model.keep_row[t + 1, i] = len(model.rows)
                model.add_row([S[t + 1, i], S[t, i], R[t, i]], [1.0, -1.0, -1.0], -np.inf, 0.0)
        if t + 1 < n:
            model.add_row([S[t + 1, t], R[t, t]], [1.0, -1.0], -np.inf, 0.0)
        # (4) frees only after the last use, of values not kept
        for i, k, c in frees_of_stage[t]:
            model.add_row([c, R[t, k]], [1.0, -1.0], -np.inf, 0.0)
            if t + 1 < n:
                model.add_row([c, S[t + 1, i]], [1.0, 1.0], -np.inf, 1.0)
            for j in user_sets[i]:
                if k < j <= t:
                    model.add_row([c, R[t, j]], [1.0, 1.0], -np.inf, 1.0)
        # (6) usefulness (dominance): with costs >= 0 some optimal schedule computes or keeps a
        # value in stage t only if a node computed in the stage reads it or it is kept into t+1.
        if usefulness:
            for i in range(t):
                readers = [R[t, j] for j in g.users[i] if j <= t]
                keep = [S[t + 1, i]] if t + 1 < n else []
                for which, col in (("R", R[t, i]), ("S", S[t, i])):
                    model.useful_row[t, i, which] = len(model.rows)
                    model.add_row(
                        [col, *readers, *keep],
                        [1.0] + [-1.0] * (len(readers) + len(keep)),
                        -np.inf,
                        0.0,
                    )
        # (5) memory recurrence
        cols = [U[t, 0], R[t, 0]] + [S[t, i] for i in range(t)]
        vals = [1.0, -float(m[0])] + [-float(m[i]) for i in range(t)]
        model.start_row[t] = len(model.rows)
        model.add_row(cols, vals, 0.0, 0.0)
        for k in range(1, t + 1):
            cols = [U[t, k], U[t, k - 1], R[t, k]]
            vals = [1.0, -1.0, -float(m[k])]
            for i in range(k):
                if (t, i, k - 1) in F:
                    cols.append(F[t, i, k - 1])
                    vals.append(float(m[i]))
            model.add_row(cols, vals, 0.0, 0.0)
    return model


class MilpStatus(str, enum.Enum):
    """What a backend's solve ended with."""

    OPTIMAL = "optimal"  # proven within the gap asked for
    FEASIBLE = "feasible"  # a solution, not proven
    INFEASIBLE = "infeasible"  # proven: no solution
    NO_SOLUTION = "no_solution"  # none found (a time limit, a numerical failure)


@dataclass
class MilpResult:
    """What a backend found: status, solution, objective, best bound, gap."""

    status: MilpStatus
    x: npt.NDArray[np.float64] | None
    objective: float | None
    bound: float | None
    backend: str
    message: str = ""

    def plan(self, model: MilpModel) -> tuple[BoolMatrix, BoolMatrix]:
        assert self.x is not None
        n = model.n
        R = np.zeros((n, n), dtype=bool)
        S = np.zeros((n, n), dtype=bool)
        for (t, i), c in model.r_col.items():
            R[t, i] = self.x[c] > 0.5
        for (t, i), c in model.s_col.items():
            S[t, i] = self.x[c] > 0.5
        return R, S
