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
        main, ["profile", "tests.cli.test_cli_profile:tiny", "--out", str(out), "--repeats", "1"]
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
        ("foo", "is not builtin:NAME, path/to/file.py:function or package.module:function"),
        ("tests.cli.test_cli_profile:missing", "has no function 'missing'"),
        ("no_such_package.mod:build", "cannot import 'no_such_package.mod'"),
        ("does/not/exist.py:build", "no such file 'does/not/exist.py'"),
    ],
)
def test_profile_bad_model(spec: str, message: str) -> None:
    res = CliRunner().invoke(main, ["profile", spec])
    assert res.exit_code == 1
    assert message in res.output
    assert res.output.startswith("error (ProfilingError): ") and "Traceback" not in res.output


USER_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(4))

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x.square().mean()


def build():
    torch.manual_seed(0)
    return Net(), (torch.randn(32, 16),)
"""


def test_user_file_profile_solve_inspect(tmp_path, monkeypatch) -> None:
    """A factory in the user's own file, end to end: profile -> solve -> inspect (with the plot),
    then bad input: a factory the file does not define, a budget below the minimum."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_model.py").write_text(USER_FILE)
    runner = CliRunner()
    res = runner.invoke(
        main, ["profile", "my_model.py:build", "--out", "net.profile.json", "--repeats", "1"]
    )
    assert res.exit_code == 0, res.output
    for name in ("layers.0", "layers.3", "epilogue+loss"):
        assert name in res.output
    res = runner.invoke(main, ["solve", "net.profile.json", "--budget", "20KB", "--solver", "dp",
                               "--out", "s.json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        main, ["inspect", "s.json", "--problem", "net.profile.json", "--plot", "memory.png"]
    )
    assert res.exit_code == 0, res.output
    assert "simulated          valid" in res.output
    png = tmp_path / "memory.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    res = runner.invoke(main, ["profile", "my_model.py:biuld"])
    assert res.exit_code == 1
    assert "my_model.py has no function 'biuld'; it defines" in res.output
    assert "build" in res.output
    res = runner.invoke(main, ["solve", "net.profile.json", "--budget", "10B", "--solver", "dp"])
    assert res.exit_code == 1
    line = res.output.splitlines()[0]
    assert line.startswith("error (InfeasibleBudgetError)") and "minimum feasible budget" in line
    res = runner.invoke(main, ["-v", "solve", "net.profile.json", "--budget", "10B"])
    assert res.exit_code == 1 and "Traceback" in res.output
