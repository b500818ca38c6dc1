"""The exception tree of checkpoint_solver.

Every error raised on purpose by the library derives from `CheckpointSolverError`, and also from the
builtin that fits (`ValueError` for bad values, `TypeError` for bad types, `LookupError` for unknown
names), so callers can catch either. Each message says what was wrong and what would work.
"""

from __future__ import annotations

__all__ = [
    "ApplyError",
    "CheckpointSolverError",
    "FileFormatError",
    "FingerprintMismatchError",
    "InfeasibleBudgetError",
    "InvalidArgumentError",
    "InvalidBudgetError",
    "InvalidOptionError",
    "InvalidProblemError",
    "InvalidScheduleError",
    "ProfilingError",
    "ReplayError",
    "ScheduleFormatError",
    "SolverUnavailableError",
    "UnknownOptionError",
    "UnknownSolverError",
]


class CheckpointSolverError(Exception):
    """Base class of every error raised on purpose by checkpoint_solver."""


class InvalidProblemError(CheckpointSolverError, ValueError):
    """A `Chain` or `Graph` is inconsistent (lengths, negative sizes, cycles, missing inputs)."""


class InvalidBudgetError(CheckpointSolverError, ValueError):
    """A memory budget is not a positive, finite number of bytes (or a parseable string such as "6GiB")."""


class InfeasibleBudgetError(CheckpointSolverError, ValueError):
    """No schedule of the requested solver fits the budget.

    Attributes
    ----------
    budget_bytes : int
        The budget that was asked for.
    min_budget_bytes : int | None
        The smallest budget at which the solver finds a schedule, when it is known.
    solver : str
        The solver that was asked.
    """

    def __init__(
        self,
        budget_bytes: int,
        min_budget_bytes: int | None,
        solver: str,
        *,
        hint: str = "",
    ) -> None:
        from checkpoint_solver.units import format_bytes

        self.budget_bytes = budget_bytes
        self.min_budget_bytes = min_budget_bytes
        self.solver = solver
        self.hint = hint
        msg = f"budget {budget_bytes} bytes ({format_bytes(budget_bytes)}) is infeasible for solver {solver!r}"
        if min_budget_bytes is not None:
            msg += (
                f"; the minimum feasible budget is {min_budget_bytes} bytes"
                f" ({format_bytes(min_budget_bytes)}): raise the budget to at least that"
            )
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (
            _infeasible,
            (type(self), self.budget_bytes, self.min_budget_bytes, self.solver, self.hint),
        )


def _infeasible(
    cls: type[InfeasibleBudgetError], budget: int, low: int | None, solver: str, hint: str
) -> InfeasibleBudgetError:
    return cls(budget, low, solver, hint=hint)


class InvalidScheduleError(CheckpointSolverError, ValueError):
    """A schedule breaks the rules of the simulator.

    Attributes
    ----------
    index : int
        Position of the first offending op in ``schedule.ops`` (``len(ops)`` for "the schedule ended
        before finishing the backward pass").
    op : str | None
        The offending op as text (``None`` when the schedule ended too early).
    reason : str
        Why the op is not allowed at that point.
    """

    def __init__(self, index: int, op: str | None, reason: str) -> None:
        self.index = index
        self.op = op
        self.reason = reason
        where = f"op {index} ({op})" if op is not None else f"end of schedule (after {index} ops)"
        super().__init__(f"invalid schedule at {where}: {reason}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.index, self.op, self.reason))


class FileFormatError(CheckpointSolverError, ValueError):
    """A schedule, problem or profile file is not valid JSON of a supported format and version;
    the message names the file and what is wrong (a field by its JSON path)."""


# The name it had when schedules were the only files: the same class, so code catching it still
# catches every file's format error.
ScheduleFormatError = FileFormatError


class FingerprintMismatchError(CheckpointSolverError, ValueError):
    """A schedule is used with a problem (or model) other than the one it was solved for."""


class UnknownSolverError(CheckpointSolverError, LookupError):
    """The solver name is not registered, or does not handle this kind of problem."""


class UnknownOptionError(CheckpointSolverError, TypeError):
    """A solver was given an option it does not take."""


class InvalidArgumentError(CheckpointSolverError, TypeError):
    """A public function was given an argument of the wrong kind (a file path where a loaded
    schedule is expected, a string for a model); the message says what was given, what is
    expected, and how to get it."""


class InvalidOptionError(CheckpointSolverError, ValueError):
    """A solver option has a value the solver cannot use."""


class SolverUnavailableError(CheckpointSolverError, RuntimeError):
    """A solver's backend (for example a MILP binary) is not installed on this machine."""


class ProfilingError(CheckpointSolverError, ValueError):
    """A model, its inputs or its blocks cannot be profiled as asked; the message says why and what
    would work."""


class ApplyError(CheckpointSolverError, ValueError):
    """A schedule cannot be applied to this model as asked (another kind of schedule, a model that
    already has one, a stage count that does not match); the message says what would work."""


class ReplayError(CheckpointSolverError, RuntimeError):
    """The model or autograd went out of step with the schedule during a training step (a block
    not called once in order, a rerun that saved other tensors than the forward, a second
    backward); the message names the stage."""
