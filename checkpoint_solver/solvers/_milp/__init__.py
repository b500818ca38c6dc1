"""Checkmate's MILP: the formulation (`formulation`) and its two backends, HiGHS (`highs`) and
CBC (`cbc`); this module picks the backend.

See `checkpoint_solver.solvers._milp.formulation` for the variables and constraints.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from checkpoint_solver.errors import SolverUnavailableError
from checkpoint_solver.solvers._milp.cbc import cbc_path, run_cbc
from checkpoint_solver.solvers._milp.formulation import MilpModel, MilpResult, MilpStatus, build
from checkpoint_solver.solvers._milp.highs import run_highs

__all__ = [
    "BACKENDS",
    "MilpModel",
    "MilpResult",
    "MilpStatus",
    "available_backends",
    "build",
    "require_backend",
    "run",
]

BACKENDS = ("highs", "cbc")


def available_backends() -> list[str]:
    """Backends usable on this machine."""
    found = []
    try:
        import highspy  # noqa: F401

        found.append("highs")
    except ImportError:
        pass
    if cbc_path() is not None:
        found.append("cbc")
    return found


def require_backend(backend: str) -> None:
    """Raise SolverUnavailableError, naming the available backends, when `backend` is not here."""
    if backend not in available_backends():
        raise SolverUnavailableError(
            f"MILP backend {backend!r} is not available here; available: "
            f"{', '.join(available_backends()) or 'none'} (HiGHS comes with the highspy package, "
            f"CBC with pulp)"
        )


def run(
    model: MilpModel,
    backend: str,
    *,
    time_limit: float | None,
    rel_gap: float,
    threads: int | None,
    warm_start: npt.NDArray[np.float64] | None = None,
    relax: bool = False,
) -> MilpResult:
    """Solve with `backend` ("highs" or "cbc"); `relax` solves the LP relaxation."""
    require_backend(backend)
    if backend == "highs":
        return run_highs(model, time_limit, rel_gap, threads, warm_start, relax)
    return run_cbc(model, time_limit, rel_gap, threads, warm_start, relax)
