"""Schedule JSON: round trip, golden file, schema, atomic writes, stable bytes."""

from __future__ import annotations

import json
import os
import re

import pytest

from checkpoint_solver import Schedule, ScheduleFormatError, solve
from checkpoint_solver.problem.synthetic import random_chain, random_dag
from checkpoint_solver.schedule import (
    Bwd,
    Compute,
    Free,
    FreeActivation,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
    Prediction,
    Status,
    parse_op,
)

GOLDEN = """{
  "budget_bytes": 100,
  "format": "checkpoint-schedule",
  "ops": [
    "F_ck(1)",
    "F_all(2)",
    "B(2)",
    "F_all(1)",
    "B(1)"
  ],
  "predicted": {
    "compute_time": 34.0,
    "overhead": 0.030303030303030276,
    "peak_bytes": 18
  },
  "problem": {
    "fingerprint": "sha256:%s",
    "kind": "chain",
    "size": 2
  },
  "solver": {
    "gap": null,
    "lower_bound": null,
    "name": "hand",
    "options": {
      "note": "written by hand"
    },
    "solve_s": null,
    "status": "heuristic"
  },
  "version": 1
}
""" % ("0" * 64)


def _hand_schedule() -> Schedule:
    return Schedule(
        kind="chain",
        fingerprint="sha256:" + "0" * 64,
        size=2,
        budget_bytes=100,
        ops=(FwdCheckpoint(1), FwdTape(2), Bwd(2), FwdTape(1), Bwd(1)),
        solver="hand",
        options={"note": "written by hand"},
        predicted=Prediction(peak_bytes=18, compute_time=34.0, overhead=34 / 33 - 1),
    )


def test_golden_file(tmp_path) -> None:
    """A hand-built schedule serialises to exactly the golden text and loads back equal."""
    path = _hand_schedule().save(tmp_path / "s.json", timing=False)
    assert path.read_text() == GOLDEN
    assert Schedule.load(path) == _hand_schedule()


@pytest.mark.parametrize("problem", [random_chain(8, seed=1), random_dag(10, seed=3)])
def test_round_trip_of_solver_output(tmp_path, problem) -> None:
    """Every field of a solved schedule survives save and load."""
    s = solve(problem, 10**6, "store_all")
    assert Schedule.load(s.save(tmp_path / "s.json")) == s


def test_ops_parse_back() -> None:
    """Each op's text parses back to the same op."""
    ops = [
        FwdNoTape(3),
        FwdCheckpoint(1),
        FwdTape(12),
        Bwd(4),
        FreeActivation(2),
        Compute(0),
        Free(17),
    ]
    assert [parse_op(str(op)) for op in ops] == ops


def test_unknown_op_text() -> None:
    """An unknown op string raises ScheduleFormatError listing the forms."""
    with pytest.raises(ScheduleFormatError, match="chain ops are F_n"):
        parse_op("F_x(1)")


def test_wrong_format_and_version() -> None:
    """Another format or version raises ScheduleFormatError naming the supported ones."""
    data = json.loads(GOLDEN)
    with pytest.raises(ScheduleFormatError, match="expected 'checkpoint-schedule'"):
        Schedule.from_dict({**data, "format": "checkpoint-problem"})
    with pytest.raises(ScheduleFormatError, match="reads versions 1"):
        Schedule.from_dict({**data, "version": 7})


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.__setitem__("budget_bytes", -5), "budget_bytes"),
        (lambda d: d["solver"].__setitem__("status", "great"), "solver/status"),
        (lambda d: d["ops"].__setitem__(1, "jump(2)"), "ops/1"),
        (lambda d: d["problem"].__setitem__("fingerprint", "md5:abc"), "problem/fingerprint"),
        (lambda d: d.__setitem__("surprise", 1), "(top level)"),
        (lambda d: d["predicted"].pop("peak_bytes"), "predicted"),
    ],
)
def test_schema_rejects(mutate, where: str) -> None:
    """Schema violations raise ScheduleFormatError naming the failing field."""
    data = json.loads(GOLDEN)
    mutate(data)
    with pytest.raises(ScheduleFormatError, match=re.escape(f"at {where}")):
        Schedule.from_dict(data)


def test_graph_op_in_chain_schedule() -> None:
    """A graph op inside a chain schedule is refused."""
    data = json.loads(GOLDEN)
    data["ops"][0] = "compute(1)"
    with pytest.raises(ScheduleFormatError, match="is not a chain op"):
        Schedule.from_dict(data)


def test_unwritable_path_leaves_nothing(tmp_path) -> None:
    """Saving into a missing folder, or under a file, raises OSError and leaves nothing behind."""
    s = _hand_schedule()
    with pytest.raises(OSError, match="choose a writable folder"):
        s.save(tmp_path / "missing" / "s.json")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OSError, match="choose a writable folder"):
        s.save(blocker / "s.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_failed_write_keeps_old_file(tmp_path, monkeypatch) -> None:
    """A write that fails midway leaves the previous file intact and no temporary file."""
    target = tmp_path / "s.json"
    target.write_text("old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        _hand_schedule().save(target)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_bytes_are_stable_and_one_op_per_line(tmp_path) -> None:
    """Solving twice without timing gives identical bytes; each op sits on its own line."""
    c = random_chain(6, seed=4)
    a = solve(c, 10**6, "uniform").save(tmp_path / "a.json", timing=False).read_text()
    b = solve(c, 10**6, "uniform").save(tmp_path / "b.json", timing=False).read_text()
    assert a == b
    lines = [line.strip() for line in a.splitlines()]
    assert '"F_all(1)",' in lines


def test_status_values() -> None:
    """Status values are the three documented strings."""
    assert [s.value for s in Status] == ["optimal", "feasible", "heuristic"]
