"""checkpoint_solver: optimal activation-recomputation schedules for PyTorch training.

Profile a model into a problem (`Chain` or `Graph`), `solve` it for a memory budget, save the
`Schedule` as JSON, check it with `simulate`, and replay it at training time. Importing this
package never imports torch.

Examples
--------
>>> import checkpoint_solver as cs
>>> chain = cs.load_problem("example:transformer-chain")
>>> sched = cs.solve(chain, "12GiB", "uniform")
>>> cs.simulate(chain, sched).valid
True
"""

from __future__ import annotations

from typing import Any

from checkpoint_solver.errors import (
    ApplyError,
    CheckpointSolverError,
    FingerprintMismatchError,
    InfeasibleBudgetError,
    InvalidArgumentError,
    InvalidBudgetError,
    InvalidOptionError,
    InvalidProblemError,
    InvalidScheduleError,
    ProfilingError,
    ReplayError,
    ScheduleFormatError,
    SolverUnavailableError,
    UnknownOptionError,
    UnknownSolverError,
)
from checkpoint_solver.problem import (
    Chain,
    Graph,
    Problem,
    fingerprint,
    load_problem,
    problem_from_dict,
    problem_to_dict,
    save_problem,
)
from checkpoint_solver.profiling.record import Profile
from checkpoint_solver.schedule import Prediction, Schedule, Status, load_schedule, save_schedule
from checkpoint_solver.simulation import SimulationReport, Violation, check, simulate
from checkpoint_solver.solvers import (
    TradeoffPoint,
    available_solvers,
    min_budget,
    solve,
    tradeoff,
)
from checkpoint_solver.units import format_bytes, format_seconds, parse_bytes

__version__ = "0.1.0"

__all__ = [
    "ApplyError",
    "Chain",
    "CheckpointSolverError",
    "FingerprintMismatchError",
    "Graph",
    "InfeasibleBudgetError",
    "InvalidArgumentError",
    "InvalidBudgetError",
    "InvalidOptionError",
    "InvalidProblemError",
    "InvalidScheduleError",
    "Prediction",
    "Problem",
    "ProfilingError",
    "ReplayError",
    "Schedule",
    "ScheduleFormatError",
    "SimulationReport",
    "SolverUnavailableError",
    "Status",
    "TradeoffPoint",
    "UnknownOptionError",
    "UnknownSolverError",
    "Violation",
    "__version__",
    "apply",
    "available_solvers",
    "check",
    "fingerprint",
    "format_bytes",
    "format_seconds",
    "load_problem",
    "load_schedule",
    "min_budget",
    "parse_bytes",
    "problem_from_dict",
    "problem_to_dict",
    "profile",
    "runtime",
    "save_problem",
    "save_schedule",
    "simulate",
    "solve",
    "tradeoff",
]


def profile(model: Any, example_inputs: Any, **kwargs: Any) -> Profile:
    """Profile a torch model into a chain (and op graph); see
    `checkpoint_solver.profiling.chain.profile`. Imports torch when called."""
    from checkpoint_solver.profiling import profile as _profile

    return _profile(model, example_inputs, **kwargs)


def apply(model: Any, schedule: Schedule, profile: Profile | None = None, **kwargs: Any) -> Any:
    """Make a torch model train under a chain schedule; see
    `checkpoint_solver.runtime.executor.apply`. Imports torch when called."""
    from checkpoint_solver.runtime.executor import apply as _apply

    return _apply(model, schedule, profile, **kwargs)


# Subpackages reachable as attributes before anyone imported them (``cs.runtime.remove(model)``
# right after ``import checkpoint_solver as cs``); `runtime` itself imports torch only when one of
# its torch-side names is used.
_SUBMODULES = ("runtime", "profiling", "models", "zoo", "compare", "report", "buckets")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"checkpoint_solver.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return list(__all__)
