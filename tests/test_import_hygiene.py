"""The core never imports torch."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_core_import_leaves_torch_out() -> None:
    """Importing the package and its solvers does not import torch."""
    mods = _modules_after(
        "import checkpoint_solver, checkpoint_solver.solvers, checkpoint_solver.simulation"
    )
    assert "checkpoint_solver.solvers" in mods
    assert "torch" not in mods


def test_cli_solve_leaves_torch_out(tmp_path) -> None:
    """Running `solve`, `simulate` and `inspect` through the CLI entry point does not import torch."""
    out = tmp_path / "s.json"
    code = (
        "from checkpoint_solver.cli import main\n"
        f"for argv in (['solve', 'example:transformer-chain', '-b', '8GiB', '-s', 'uniform', '--out', {str(out)!r}],"
        f" ['simulate', 'example:transformer-chain', {str(out)!r}], ['inspect', {str(out)!r}]):\n"
        "    try:\n"
        "        main(argv, standalone_mode=False)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
    )
    mods = _modules_after(code)
    assert out.exists()
    assert "checkpoint_solver.cli.solve" in mods
    assert "torch" not in mods


def test_runtime_is_an_attribute_before_any_apply() -> None:
    """``cs.runtime`` resolves right after ``import checkpoint_solver as cs`` without torch; its
    torch-side functions load torch when used."""
    mods = _modules_after("import checkpoint_solver as cs\nassert cs.runtime.ReplayPlan")
    assert "checkpoint_solver.runtime" in mods
    assert "torch" not in mods
    mods = _modules_after(
        "import checkpoint_solver as cs\nassert callable(cs.runtime.remove)\n"
        "assert callable(cs.runtime.last_trace)"
    )
    assert "torch" in mods
