"""The exported schedules in schedules/: each loads, validates, simulates valid within its budget on
its problem, and the script regenerates them byte for byte."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import checkpoint_solver as cs

ROOT = Path(__file__).resolve().parents[1] / "schedules"
FILES = sorted(ROOT.glob("*__*.json"))


def _script():
    spec = importlib.util.spec_from_file_location("_regenerate", ROOT / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_schedules_for_every_model() -> None:
    models = {f.name.split("__")[0] for f in FILES}
    assert models == {"gpt", "mlp", "resnet", "transformer-chain", "vgg16-graph"}
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_schedule_is_valid_within_budget(path: Path) -> None:
    regen = _script()
    sched = cs.Schedule.load(path)  # validates against the schema
    problem = cs.load_problem(regen.problem_of(path))
    report = cs.check(problem, sched)  # raises at the first bad op
    assert report.valid and report.peak_bytes <= sched.budget_bytes
    assert report.peak_bytes == sched.predicted.peak_bytes
    assert sched.solver == path.stem.split("__")[2]
    assert sched.solve_s is None


def test_regenerates_byte_identically(tmp_path: Path) -> None:
    written = _script().generate(tmp_path)
    assert sorted(p.name for p in written) == [p.name for p in FILES]
    for fresh in written:
        assert fresh.read_bytes() == (ROOT / fresh.name).read_bytes(), fresh.name
