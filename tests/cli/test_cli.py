"""CLI wiring: exit codes, one-line errors, JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from checkpoint_solver import Schedule, load_problem, save_problem
from checkpoint_solver.cli import main
from checkpoint_solver.problem.synthetic import random_dag, uniform_chain


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_solve_simulate_inspect_round_trip(runner: CliRunner, tmp_path) -> None:
    """solve writes a schedule that simulate accepts and inspect summarizes."""
    out = tmp_path / "s.json"
    r = runner.invoke(
        main,
        ["solve", "example:transformer-chain", "-b", "8GiB", "-s", "uniform", "--out", str(out)],
    )
    assert r.exit_code == 0, r.output
    assert "uniform" in r.output and out.exists()
    r = runner.invoke(main, ["simulate", "example:transformer-chain", str(out)])
    assert r.exit_code == 0 and "valid           yes" in r.output
    r = runner.invoke(main, ["inspect", str(out), "--ops"])
    assert r.exit_code == 0 and "recomputed stages" in r.output and "F_ck(1)" in r.output


def test_json_outputs_parse(runner: CliRunner, tmp_path) -> None:
    """--json output of solve, simulate and inspect is JSON with the documented keys."""
    p = save_problem(random_dag(8, seed=1), tmp_path / "g.json")
    out = tmp_path / "s.json"
    r = runner.invoke(
        main, ["solve", str(p), "-b", "1MiB", "-s", "store_all", "--out", str(out), "--json"]
    )
    data = json.loads(r.output)
    assert data["saved_to"] == str(out) and data["schedule"]["format"] == "checkpoint-schedule"
    r = runner.invoke(main, ["simulate", str(p), str(out), "--json"])
    sim = json.loads(r.output)
    assert sim["valid"] is True and sim["peak_bytes"] == data["schedule"]["predicted"]["peak_bytes"]
    assert len(sim["timeline"]) == len(data["schedule"]["ops"])
    r = runner.invoke(main, ["inspect", str(out), "--json"])
    assert json.loads(r.output)["summary"]["op_counts"]["compute"] == 8


def test_option_flag(runner: CliRunner) -> None:
    """-o KEY=VALUE passes a JSON-typed option to the solver."""
    r = runner.invoke(
        main,
        [
            "solve",
            "example:transformer-chain",
            "-b",
            "20GiB",
            "-s",
            "uniform",
            "-o",
            "segments=3",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["schedule"]["solver"]["options"] == {"segments": 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["solve", "missing.json", "-b", "1GiB"], "does not exist"),
        (["solve", "example:transformer-chain", "-b", "lots"], "cannot parse budget 'lots'"),
        (["solve", "example:transformer-chain", "-b", "0"], "not positive"),
        (
            ["solve", "example:transformer-chain", "-b", "1MiB", "-s", "sqrt"],
            "minimum feasible budget",
        ),
        (
            ["solve", "example:transformer-chain", "-b", "1GiB", "-s", "nope"],
            "unknown solver 'nope'",
        ),
        (
            ["solve", "example:transformer-chain", "-b", "9GiB", "-s", "uniform", "-o", "k=2"],
            "its options are: segments",
        ),
        (["inspect", "example.json"], "does not exist"),
    ],
)
def test_errors_are_one_line_with_exit_1(runner: CliRunner, args: list[str], message: str) -> None:
    """Bad input exits 1 with one error line carrying a hint, and no traceback."""
    r = runner.invoke(main, args)
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in r.output


def test_verbose_shows_traceback(runner: CliRunner) -> None:
    """-v adds the traceback to the error."""
    r = runner.invoke(main, ["-v", "solve", "example:transformer-chain", "-b", "lots"])
    assert r.exit_code == 1 and "Traceback" in r.output


def test_invalid_schedule_exits_1(runner: CliRunner, tmp_path) -> None:
    """simulate exits 1 and names the violation for a schedule the simulator rejects."""
    chain = uniform_chain(3)
    p = save_problem(chain, tmp_path / "c.json")
    from checkpoint_solver import solve

    s = solve(chain, 100, "store_all")
    bad = s.replace(ops=s.ops[:-1])
    bad.save(tmp_path / "bad.json")
    r = runner.invoke(main, ["simulate", str(p), str(tmp_path / "bad.json")])
    assert r.exit_code == 1 and "ends before B(1)" in r.output
    assert Schedule.load(tmp_path / "bad.json").ops == bad.ops
    assert load_problem(p) == chain


def test_schedule_for_other_problem(runner: CliRunner, tmp_path) -> None:
    """simulate refuses a schedule solved for another problem, naming both fingerprints."""
    out = tmp_path / "s.json"
    runner.invoke(main, ["solve", "example:transformer-chain", "-b", "20GiB", "--out", str(out)])
    p = save_problem(uniform_chain(14), tmp_path / "u.json")
    r = runner.invoke(main, ["simulate", str(p), str(out)])
    assert r.exit_code == 1 and "FingerprintMismatchError" in r.output


def test_module_entry_point() -> None:
    """python -m checkpoint_solver --help works."""
    r = subprocess.run(
        [sys.executable, "-m", "checkpoint_solver", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "solve" in r.stdout and "simulate" in r.stdout
