"""The `Schedule` record every solver returns."""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from checkpoint_solver.schedule.link import HostLink
from checkpoint_solver.schedule.ops import CHAIN_OP_TYPES, COPY_OP_TYPES, GRAPH_OP_TYPES, Op

__all__ = ["Prediction", "Schedule", "Status"]


class Status(str, enum.Enum):
    """How good a schedule is known to be.

    ``OPTIMAL``: proven optimal for the problem's cost model (at the solver's discretisation).
    ``FEASIBLE``: valid, with a known relative gap to the best lower bound.
    ``HEURISTIC``: valid, no optimality claim.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    HEURISTIC = "heuristic"


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """What a solver predicts for its schedule; tests compare it with the simulator.

    Attributes
    ----------
    peak_bytes : int
        Peak memory of the schedule under the problem's memory rules.
    compute_time : float
        Total forward and backward time, recomputations included, in the problem's cost unit.
    overhead : float
        ``compute_time / store_all_time - 1``: the relative cost of recomputation.
    stall_time : float
        With a `HostLink`: the time the step waits for copies beyond its compute (the step takes
        ``compute_time + stall_time``); 0 without one.
    host_peak_bytes : int | None
        With a `HostLink`: the most host memory the copies hold at once; None without one.
    """

    peak_bytes: int
    compute_time: float
    overhead: float
    stall_time: float = 0.0
    host_peak_bytes: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """An ordered list of ops for one problem and budget, with how it was obtained.

    Attributes
    ----------
    kind : {"chain", "graph"}
    fingerprint : str
        Fingerprint of the problem the schedule was solved for.
    size : int
        Number of stages (chain) or nodes (graph) of that problem.
    budget_bytes : int
    scope : {"activations", "step"}
        What `budget_bytes` and the predicted peak cover: activations (the inputs included), or
        the whole training step (parameters, gradients and optimizer state too; see
        `checkpoint_solver.problem.states`).
    ops : tuple[Op, ...]
    solver : str
        Registered name of the solver that produced it.
    options : Mapping[str, Any]
        The solver options used (JSON-compatible values), including ones the solver derived.
    status : Status
    gap : float | None
        Relative gap to `lower_bound` for ``FEASIBLE`` schedules (0.0 for ``OPTIMAL``).
    lower_bound : float | None
        The best proven lower bound on compute time, when the solver has one.
    solve_s : float | None
        Wall-clock seconds the solver took (``None`` when not recorded, e.g. for byte-stable files).
    predicted : Prediction
    notes : str
        Free text from the solver (what it derived or picked, and why).
    link : HostLink | None
        The host link an offload schedule was solved for (its ops may then include `Offload` and
        `Prefetch`); None: no offload.
    """

    kind: Literal["chain", "graph"]
    fingerprint: str
    size: int
    budget_bytes: int
    ops: tuple[Op, ...]
    solver: str
    options: Mapping[str, Any] = field(default_factory=dict)
    status: Status = Status.HEURISTIC
    gap: float | None = None
    lower_bound: float | None = None
    solve_s: float | None = None
    predicted: Prediction
    notes: str = ""
    scope: Literal["activations", "step"] = "activations"
    link: HostLink | None = None

    def __post_init__(self) -> None:
        import math

        object.__setattr__(self, "ops", tuple(self.ops))
        p = self.predicted
        for where, v in (
            ("predicted.compute_time", p.compute_time),
            ("predicted.overhead", p.overhead),
            ("predicted.stall_time", p.stall_time),
            ("gap", self.gap),
            ("lower_bound", self.lower_bound),
            ("solve_s", self.solve_s),
        ):
            if isinstance(v, float) and not math.isfinite(v):
                from checkpoint_solver.errors import FileFormatError

                raise FileFormatError(
                    f"Schedule {where} is {v}; it must be a finite number (JSON has no NaN)"
                )
        object.__setattr__(self, "status", Status(self.status))
        if self.scope not in ("activations", "step"):
            from checkpoint_solver.errors import FileFormatError

            raise FileFormatError(
                f"scope is {self.scope!r}; a schedule's budget covers 'activations' or 'step'"
            )
        allowed = CHAIN_OP_TYPES if self.kind == "chain" else GRAPH_OP_TYPES
        for k, op in enumerate(self.ops):
            if not isinstance(op, allowed):
                from checkpoint_solver.errors import FileFormatError

                raise FileFormatError(
                    f"op {k} ({op}) is not a {self.kind} op; a {self.kind} schedule may only "
                    f"contain {', '.join(t.__name__ for t in allowed)}"
                )
            if self.link is None and isinstance(op, COPY_OP_TYPES):
                from checkpoint_solver.errors import FileFormatError

                raise FileFormatError(
                    f"op {k} ({op}) copies to host memory but the schedule has no link; an "
                    f"offload schedule carries the HostLink it was solved for"
                )

    def replace(self, **changes: Any) -> Schedule:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, timing: bool = True) -> dict[str, Any]:
        """Return the versioned JSON object (``timing=False`` writes ``solve_s`` as null)."""
        from checkpoint_solver.schedule.io import schedule_to_dict

        return schedule_to_dict(self, timing=timing)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """Validate and build a schedule from its versioned JSON object."""
        from checkpoint_solver.schedule.io import schedule_from_dict

        return schedule_from_dict(data)

    def save(self, path: str | os.PathLike[str], *, timing: bool = True) -> Path:
        """Write the schedule as JSON atomically (temporary file + ``os.replace``)."""
        from checkpoint_solver.schedule.io import save_schedule

        return save_schedule(self, path, timing=timing)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Schedule:
        """Read and validate a schedule JSON file."""
        from checkpoint_solver.schedule.io import load_schedule

        return load_schedule(path)
