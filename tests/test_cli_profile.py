"""`checkpoint-solver profile`, and solving a profile file from the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from checkpoint_solver.cli import main  # noqa: E402


def tiny():
    """A factory for ``package.module:function``: (model, example_inputs, blocks)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    return model, (torch.randn(4, 8),), None


def test_profile_then_solve(tmp_path) -> None:
    out = tmp_path / "tiny.profile.json"
    runner = CliRunner()
    res = runner.invoke(
        main, ["profile", "tests.test_cli_profile:tiny", "--out", str(out), "--repeats", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "epilogue+loss" in res.output and "op graph:" in res.output
    data = json.loads(out.read_text())
    assert data["format"] == "checkpoint_solver.profile" and data["chain"]["kind"] == "chain"
    res = runner.invoke(main, ["solve", str(out), "--budget", "1MB", "--solver", "dp", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["schedule"]["solver"]["name"] == "dp"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("builtin:nope", "no built-in model 'nope'"),
        ("foo", "neither builtin:NAME nor package.module:function"),
        ("tests.test_cli_profile:missing", "cannot load"),
    ],
)
def test_profile_bad_model(spec: str, message: str) -> None:
    res = CliRunner().invoke(main, ["profile", spec])
    assert res.exit_code == 1
    assert message in res.output
