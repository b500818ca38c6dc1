"""What solvers produce and the runtime consumes: ops, the `Schedule` record, its JSON."""

from __future__ import annotations

from checkpoint_solver.schedule.io import load_schedule, save_schedule
from checkpoint_solver.schedule.link import HostLink
from checkpoint_solver.schedule.ops import (
    Bwd,
    ChainOp,
    Compute,
    Free,
    FreeActivation,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
    GraphOp,
    Offload,
    OffloadValue,
    Op,
    Prefetch,
    PrefetchValue,
    parse_op,
)
from checkpoint_solver.schedule.schedule import Prediction, Schedule, Status

__all__ = [
    "Bwd",
    "ChainOp",
    "Compute",
    "Free",
    "FreeActivation",
    "FwdCheckpoint",
    "FwdNoTape",
    "FwdTape",
    "GraphOp",
    "HostLink",
    "Offload",
    "OffloadValue",
    "Op",
    "Prediction",
    "Prefetch",
    "PrefetchValue",
    "Schedule",
    "Status",
    "load_schedule",
    "parse_op",
    "save_schedule",
]
