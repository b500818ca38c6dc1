"""Versioned, validated, atomic, byte-stable schedule JSON.

The file is ``{"format": "checkpoint-schedule", "version": 1, ...}`` with sorted keys, two-space
indent and one op per line, so two schedules diff readably. Every load checks the format and
version and validates against ``schedule.v1.schema.json`` shipped in this package.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from checkpoint_solver._args import expect_path, expect_schedule
from checkpoint_solver._io import canonical_json, check_header, load_json, validate, write_atomic
from checkpoint_solver.errors import FileFormatError
from checkpoint_solver.schedule.link import HostLink
from checkpoint_solver.schedule.ops import parse_op
from checkpoint_solver.schedule.schedule import Prediction, Schedule, Status
from checkpoint_solver.units import MAX_BYTES

__all__ = [
    "SCHEDULE_FORMAT",
    "SCHEDULE_VERSIONS",
    "load_schedule",
    "save_schedule",
    "schedule_from_dict",
    "schedule_to_dict",
]

SCHEDULE_FORMAT = "checkpoint-schedule"
SCHEDULE_VERSIONS = (1,)


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise ValueError(f"cannot write non-finite number {value!r} to a schedule")
    return float(value)


def schedule_to_dict(schedule: Schedule, *, timing: bool = True) -> dict[str, Any]:
    """Return the versioned JSON object of `schedule`."""
    solver: dict[str, Any] = {
        "name": schedule.solver,
        "options": dict(schedule.options),
        "status": schedule.status.value,
        "gap": _json_float(schedule.gap),
        "lower_bound": _json_float(schedule.lower_bound),
        "solve_s": _json_float(schedule.solve_s) if timing else None,
    }
    if schedule.notes:
        solver["notes"] = schedule.notes
    return {
        "format": SCHEDULE_FORMAT,
        "version": 1,
        "problem": {
            "kind": schedule.kind,
            "fingerprint": schedule.fingerprint,
            "size": schedule.size,
        },
        "budget_bytes": schedule.budget_bytes,
        # Written only for whole-step schedules, so activation schedules keep their bytes.
        **({"scope": schedule.scope} if schedule.scope != "activations" else {}),
        "solver": solver,
        # Written only for offload schedules, so the others keep their bytes.
        **({"link": schedule.link.to_dict()} if schedule.link is not None else {}),
        "predicted": {
            "peak_bytes": schedule.predicted.peak_bytes,
            "compute_time": _json_float(schedule.predicted.compute_time),
            "overhead": _json_float(schedule.predicted.overhead),
            **(
                {
                    "stall_time": _json_float(schedule.predicted.stall_time),
                    "host_peak_bytes": schedule.predicted.host_peak_bytes,
                }
                if schedule.link is not None
                else {}
            ),
        },
        "ops": [str(op) for op in schedule.ops],
    }


def schedule_from_dict(data: Any, *, source: str = "schedule") -> Schedule:
    """Validate a JSON object and build the `Schedule` it describes.

    Raises
    ------
    FileFormatError
        Wrong format, unsupported version (the message lists the supported ones), a schema
        violation (the message names the field), or an op of the wrong kind.
    """
    check_header(
        dict(data) if isinstance(data, Mapping) else data,
        SCHEDULE_FORMAT,
        SCHEDULE_VERSIONS,
        source,
        other_format_hint="(is this a problem file? pass it as the PROBLEM argument instead)",
        upgrade_hint=": upgrade checkpoint_solver or re-solve",
    )
    validate(dict(data), "checkpoint_solver.schedule", "schedule.v1.schema.json", source)
    solver = data["solver"]
    predicted = data["predicted"]
    _check_numbers(
        source,
        {
            "budget_bytes": data["budget_bytes"],
            "predicted/peak_bytes": predicted["peak_bytes"],
            "problem/size": data["problem"]["size"],
        },
        {
            "predicted/compute_time": predicted["compute_time"],
            "predicted/overhead": predicted["overhead"],
            "predicted/stall_time": predicted.get("stall_time"),
            "solver/gap": solver["gap"],
            "solver/lower_bound": solver.get("lower_bound"),
            "solver/solve_s": solver["solve_s"],
        },
    )
    return Schedule(
        kind=data["problem"]["kind"],
        fingerprint=data["problem"]["fingerprint"],
        size=data["problem"]["size"],
        budget_bytes=data["budget_bytes"],
        scope=data.get("scope", "activations"),
        link=HostLink.from_dict(data["link"], source) if "link" in data else None,
        ops=tuple(parse_op(text) for text in data["ops"]),
        solver=solver["name"],
        options=dict(solver["options"]),
        status=Status(solver["status"]),
        gap=solver["gap"],
        lower_bound=solver.get("lower_bound"),
        solve_s=solver["solve_s"],
        predicted=Prediction(
            peak_bytes=predicted["peak_bytes"],
            compute_time=float(predicted["compute_time"]),
            overhead=float(predicted["overhead"]),
            stall_time=float(predicted.get("stall_time", 0.0)),
            host_peak_bytes=predicted.get("host_peak_bytes"),
        ),
        notes=solver.get("notes", ""),
    )


def _check_numbers(source: str, sizes: dict[str, Any], reals: dict[str, Any]) -> None:
    """Sizes within what the solvers represent, reals finite (null where allowed)."""
    for where, v in sizes.items():
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_BYTES:
            raise FileFormatError(
                f"{source} has {where} = {v}, more than {MAX_BYTES} (2**60), the most the solvers "
                f"represent; the file was edited or corrupted: regenerate it"
            )
    for where, v in reals.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise FileFormatError(
                f"{source} has {where} = {v}; it must be a finite number: regenerate it"
            )


def save_schedule(schedule: Schedule, path: str | os.PathLike[str], *, timing: bool = True) -> Path:
    """Write `schedule` to `path` atomically as canonical JSON."""
    expect_schedule(schedule, "save_schedule")
    expect_path(path, "save_schedule")
    return write_atomic(path, canonical_json(schedule_to_dict(schedule, timing=timing)))


def load_schedule(path: str | os.PathLike[str]) -> Schedule:
    """Read and validate a schedule file."""
    expect_path(path, "load_schedule")
    return schedule_from_dict(load_json(path, "schedule"), source=f"schedule file {path}")
