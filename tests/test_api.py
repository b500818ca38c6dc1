"""The public front door: `cs.profile`, `cs.apply`, `cs.capture_region` and `cs.measure_step`
show their real parameters (not ``**kwargs``) and stay in step with the functions they call;
`cs.runtime` is there from import."""

from __future__ import annotations

import inspect
import sys

import pytest

import checkpoint_solver as cs


@pytest.mark.parametrize(
    ("facade", "module", "name"),
    [
        ("profile", "checkpoint_solver.profiling.chain", "profile"),
        ("apply", "checkpoint_solver.runtime.executor", "apply"),
        ("capture_region", "checkpoint_solver.profiling.region", "capture_region"),
        ("measure_step", "checkpoint_solver.runtime.measure", "measure_step"),
        ("measure_link", "checkpoint_solver.profiling.link", "measure_link"),
    ],
)
def test_the_facade_has_the_real_signature(facade: str, module: str, name: str) -> None:
    pytest.importorskip("torch")
    import importlib

    real = inspect.signature(getattr(importlib.import_module(module), name))
    front = inspect.signature(getattr(cs, facade))
    got = [(p.name, p.kind, p.default) for p in front.parameters.values()]
    want = [(p.name, p.kind, p.default) for p in real.parameters.values()]
    assert got == want


def test_runtime_is_an_attribute_from_import_without_torch() -> None:
    assert cs.runtime.__name__ == "checkpoint_solver.runtime"
    assert callable(cs.runtime.remove)
    code = "import sys, checkpoint_solver as cs; cs.runtime; print('torch' in sys.modules)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("checkpoint_solver.report", "checkpoint_solver.curves"),
        ("checkpoint_solver.solvers.torch_rules", "checkpoint_solver.solvers.baseline_plans"),
    ],
)
def test_renamed_modules_keep_their_old_name_with_a_warning(old: str, new: str) -> None:
    """Code written against the old names runs, warned, and gets the same objects."""
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new):
        alias = importlib.import_module(old)
    target = importlib.import_module(new)
    assert alias.__all__ == target.__all__
    assert all(getattr(alias, n) is getattr(target, n) for n in target.__all__)


def test_every_files_format_error_is_one_class_under_both_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A problem file, a profile and a schedule that are not what they claim raise
    `FileFormatError`; `ScheduleFormatError`, its name when schedules were the only files, is the
    same class, so code that catches it still catches them all."""
    assert cs.ScheduleFormatError is cs.FileFormatError
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else", "version": 1}', encoding="utf-8")
    for load in (cs.load_problem, cs.load_schedule, cs.Profile.load):
        with pytest.raises(cs.FileFormatError):
            load(bad)
