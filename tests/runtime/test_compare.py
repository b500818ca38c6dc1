"""`compare` (what `checkpoint-solver demo` and `bench` print) and the demo/bench/tradeoff CLI."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from checkpoint_solver import models  # noqa: E402
from checkpoint_solver.cli import main  # noqa: E402
from checkpoint_solver.compare import compare  # noqa: E402


def test_compare_small_gpt() -> None:
    model, inputs = models.gpt(layers=3, dim=64, heads=2, context=32, vocab=256, batch=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = compare(model, inputs, fractions=(0.5, 1.0), solvers=("dp", "hierarchical"), steps=2)
    methods = [(r.method, r.budget) for r in result.rows]
    assert methods[:3] == [
        ("no checkpointing", "-"),
        ("torch per-block", "-"),
        ("torch checkpoint_sequential (2 segments)", "-"),
    ]
    assert ("dp", "50%") in methods and ("hierarchical", "100%") in methods
    assert ("dp", "= torch per-block") in methods
    # The user's model is not trained by compare: every method trains its own copy.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    trained = [r for r in result.rows if r.error is None]
    assert len(trained) >= 7
    for r in trained:
        assert r.exact, r.method  # every step's loss and the first gradients, bitwise
        assert len(r.step_times) == 2 and r.step_seconds > 0
        assert r.measured_peak_bytes <= r.predicted_peak_bytes * 1.05, (r.method, r.budget)
        if r.budget_bytes is not None:
            assert r.predicted_peak_bytes <= r.budget_bytes
    plain = result.row("no checkpointing")
    assert plain.vs_plain == 0.0 and plain.measured_peak_bytes == result.store_all_peak_bytes
    # Budgets order the measured peaks of our schedules.
    assert result.row("dp", "50%").measured_peak_bytes < plain.measured_peak_bytes
    text = result.table()
    assert "bitwise equal" in text and "DIFFER" not in text
    assert any("bitwise equal to plain autograd" in s for s in result.summary())


def test_demo_cli_json_small() -> None:
    res = CliRunner().invoke(
        main,
        ["demo", "--layers", "2", "--dim", "64", "--budgets", "0.8", "--solvers", "dp",
         "--steps", "1", "--json", "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    rows = {(r["method"], r["budget"]): r for r in data["rows"]}
    assert rows[("dp", "80%")]["exact"] is True
    assert rows[("dp", "80%")]["measured_peak_bytes"] <= rows[("dp", "80%")]["budget_bytes"]
    assert data["device"] == "cpu" and data["steps"] == 1


def test_demo_cli_table_and_bench_errors() -> None:
    runner = CliRunner()
    res = runner.invoke(
        main,
        ["demo", "--layers", "2", "--dim", "64", "--budgets", "40%", "--solvers", "dp",
         "--steps", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "no checkpointing" in res.output and "torch per-block" in res.output
    assert "[" in res.output and "profiling" in res.output  # progress (stderr, merged here)
    res = runner.invoke(main, ["bench", "builtin:mlp", "--solvers", "nope"])
    assert res.exit_code == 1 and "UnknownSolverError" in res.output
    res = runner.invoke(main, ["demo", "--budgets", "half"])
    assert res.exit_code == 1 and "is not a fraction" in res.output  # usage errors exit 1 too


def test_tradeoff_cli_png_csv(tmp_path) -> None:
    png, out = tmp_path / "curve.png", tmp_path / "curve.csv"
    res = CliRunner().invoke(
        main,
        ["tradeoff", "example:transformer-chain", "--points", "6", "--png", str(png),
         "--csv", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    rows = list(csv.DictReader(out.open()))
    methods = {r["method"] for r in rows}
    assert {"dp", "revolve", "sqrt", "uniform", "store_all", "torch per-block"} <= methods
    assert "torch sequential-2" in methods
    dp = [r for r in rows if r["method"] == "dp" and r["feasible"] == "1"]
    overheads = [float(r["overhead"]) for r in sorted(dp, key=lambda r: int(r["budget_bytes"]))]
    assert overheads == sorted(overheads, reverse=True) and overheads[-1] == 0.0


def test_tracker_measures_torch_compile() -> None:
    """Under the live-storage tracker, Dynamo still compiles (the tracker declares itself
    compile-transparent); otherwise a compiled model would be measured as its eager self."""
    from torch._dynamo.utils import counters

    from checkpoint_solver.runtime.measure import measure_step

    torch._dynamo.reset()
    counters.clear()
    model, inputs = models.mlp(depth=2, width=32, hidden=64, batch=8)
    compiled = torch.compile(model, backend="aot_eager")
    got = measure_step(compiled, inputs)  # the first call compiles, inside the tracker
    assert counters["stats"]["unique_graphs"] >= 1
    torch.manual_seed(0)
    plain = measure_step(models.mlp(depth=2, width=32, hidden=64, batch=8)[0], inputs)
    assert torch.equal(got.loss, plain.loss) and got.peak_bytes > 0
    torch._dynamo.reset()
