"""The HiGHS backend (`highspy`): the MILP (or its LP relaxation) passed as arrays, a warm
start as a MIP start, the time limit split between a first simplex and the branch and bound."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from checkpoint_solver.solvers._milp.formulation import MilpModel, MilpResult, MilpStatus


def run_highs(
    model: MilpModel,
    time_limit: float | None,
    rel_gap: float,
    threads: int | None,
    warm_start: npt.NDArray[np.float64] | None,
    relax: bool,
) -> MilpResult:
    import highspy

    A = model.matrix()
    lp = highspy.HighsLp()
    lp.num_col_ = A.shape[1]
    lp.num_row_ = A.shape[0]
    lp.col_cost_ = np.asarray(model.obj, dtype=np.float64)
    lp.col_lower_ = np.asarray(model.col_lo, dtype=np.float64)
    lp.col_upper_ = np.asarray(model.col_hi, dtype=np.float64)
    inf = highspy.kHighsInf
    lp.row_lower_ = np.array([(-inf if r[2] == -np.inf else r[2]) for r in model.rows])
    lp.row_upper_ = np.array([(inf if r[3] == np.inf else r[3]) for r in model.rows])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    if not relax:
        kinds = [
            highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
            for b in model.integer
        ]
        lp.integrality_ = kinds
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("mip_rel_gap", float(rel_gap))
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    h.passModel(lp)
    if warm_start is not None and not relax:
        sol = highspy.HighsSolution()
        sol.col_value = list(warm_start)
        sol.value_valid = True
        h.setSolution(sol)
    if relax:
        _run_lp(h, time_limit)
    else:
        h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    S = highspy.HighsModelStatus
    has_x = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.asarray(h.getSolution().col_value) if has_x else None
    objective = float(info.objective_function_value) if has_x else None
    why = h.modelStatusToString(status)
    if relax:
        if status == S.kOptimal:
            return MilpResult(MilpStatus.OPTIMAL, x, objective, objective, "highs")
        if status == S.kInfeasible:
            return MilpResult(MilpStatus.INFEASIBLE, None, None, None, "highs")
        return MilpResult(MilpStatus.NO_SOLUTION, None, None, None, "highs", why)
    bound = float(info.mip_dual_bound) if math.isfinite(info.mip_dual_bound) else None
    if status == S.kInfeasible:
        return MilpResult(MilpStatus.INFEASIBLE, None, None, None, "highs")
    if status == S.kOptimal and x is not None:
        gap_ok = rel_gap == 0 or (
            objective is not None
            and bound is not None
            and objective - bound <= 1e-9 * max(1.0, abs(objective))
        )
        return MilpResult(
            MilpStatus.OPTIMAL if gap_ok else MilpStatus.FEASIBLE, x, objective, bound, "highs"
        )
    if x is not None:
        return MilpResult(MilpStatus.FEASIBLE, x, objective, bound, "highs", why)
    return MilpResult(MilpStatus.NO_SOLUTION, None, None, bound, "highs", why)


# Seconds the dual simplex gets on an LP relaxation before the interior point method takes over.
_SIMPLEX_FIRST = 10.0


def _run_lp(h: Any, time_limit: float | None) -> None:
    """Solve an LP relaxation: dual simplex first, interior point (no crossover) if it runs long.

    Neither wins everywhere (HiGHS 1.x, 2 cores, at 90 % of the store-all peak):
    random_layered_n100 simplex 0.8 s, IPM 6.5 s; MobileNet simplex over 120 s, IPM 36 s. Rounding
    needs the values, not a basis, so IPM skips crossover.
    """
    import highspy

    began = time.perf_counter()
    quick = _SIMPLEX_FIRST if time_limit is None else min(_SIMPLEX_FIRST, time_limit / 3)
    h.setOptionValue("solver", "simplex")
    h.setOptionValue("time_limit", float(quick))
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kTimeLimit:
        return
    h.setOptionValue("solver", "ipm")
    h.setOptionValue("run_crossover", "off")
    if time_limit is None:
        h.setOptionValue("time_limit", highspy.kHighsInf)
    else:
        h.setOptionValue("time_limit", max(time_limit - (time.perf_counter() - began), 0.01))
    h.run()
