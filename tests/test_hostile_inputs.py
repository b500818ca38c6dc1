"""The reproducers of the hostile-input issue, one test per cause: each ends in a typed
`CheckpointSolverError` whose message names what was wrong and what would work."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import checkpoint_solver as cs
from checkpoint_solver.cli import main
from checkpoint_solver.problem.synthetic import random_dag, transformer_chain

CHAIN = transformer_chain(3)


def _node_link(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "directed": True,
        "graph": {"name": "g"},
        "nodes": [
            {"id": "a", "cost": 1, "out_bytes": 4, "is_backward": False},
            {"id": "b", "cost": 1, "out_bytes": 4, "is_backward": False},
            {"id": "c", "cost": 1, "out_bytes": 4, "is_backward": True},
        ],
        "links": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    }
    data.update(changes)
    return data


def _write(tmp_path: Path, data: Any, name: str = "f.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


# Reading JSON


def test_non_utf8_and_deep_nesting_are_format_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{}")
    with pytest.raises(cs.ScheduleFormatError, match=r"not UTF-8 text .*regenerate"):
        cs.load_schedule(bad)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(cs.ScheduleFormatError, match="nests arrays or objects too deeply"):
        cs.load_problem(deep)


def test_a_folder_given_as_a_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(cs.ScheduleFormatError, match="is a folder; give the path of a JSON file"):
        cs.load_schedule(tmp_path)


# Node-link graphs


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"links": "a->b"}, r"'links' must be a list of link objects, got a string"),
        ({"links": [["a", "b"]]}, r"links\[0\] must be an object with 'source' and 'target'"),
        ({"links": 5}, r"'links' must be a list"),
        ({"graph": 0}, r"'graph' must be an object"),
        ({"graph": {"order": 5}}, r"graph.order must be a list of node ids"),
        ({"nodes": [1, 2]}, r"nodes\[0\] must be an object, got a int"),
        ({"nodes": "abc"}, r"'nodes' must be a non-empty list"),
    ],
)
def test_node_link_shapes_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(cs.InvalidProblemError, match=message):
        cs.problem_from_dict(_node_link(**changes))


def test_node_link_ids_are_unique_scalars_and_flags_booleans() -> None:
    data = _node_link()
    data["nodes"][1]["id"] = "a"
    with pytest.raises(cs.InvalidProblemError, match="repeats node id 'a'"):
        cs.problem_from_dict(data)
    for bad in ([1], None, True):
        data = _node_link()
        data["nodes"][0]["id"] = bad
        with pytest.raises(cs.InvalidProblemError, match="ids must be strings or integers"):
            cs.problem_from_dict(data)
    data = _node_link()
    data["nodes"][2]["is_backward"] = "false"
    with pytest.raises(cs.InvalidProblemError, match=r"is_backward a string .*use true or false"):
        cs.problem_from_dict(data)


def test_node_link_block_on_all_nodes_or_none() -> None:
    data = _node_link()
    data["nodes"][0]["block"] = 0
    with pytest.raises(cs.InvalidProblemError, match="'block' is on 1 of the 3 nodes"):
        cs.problem_from_dict(data)
    for k, node in enumerate(data["nodes"]):
        node["block"] = k
    del data["nodes"][0]["block"]
    with pytest.raises(cs.InvalidProblemError, match="'block' is on 2 of the 3 nodes"):
        cs.problem_from_dict(data)
    data["nodes"][0]["block"] = 0
    assert cs.problem_from_dict(data).block == (0, 1, 2)


def test_a_versioned_problem_without_its_format_says_so(tmp_path: Path) -> None:
    data = cs.problem_to_dict(random_dag(4, seed=0))
    del data["format"]
    with pytest.raises(cs.ScheduleFormatError, match="has no 'format' field but looks like"):
        cs.load_problem(_write(tmp_path, data))


def test_a_profile_without_its_chain_says_so(tmp_path: Path) -> None:
    from checkpoint_solver.problem.profile import Profile, StageInfo

    prof = Profile(
        chain=CHAIN, stages=tuple(StageInfo(name=f"s{k}", modules=()) for k in range(CHAIN.length))
    )
    data = prof.to_dict()
    del data["chain"]
    with pytest.raises(cs.ScheduleFormatError, match="has no 'chain'"):
        Profile.load(_write(tmp_path, data))
    with pytest.raises(cs.ScheduleFormatError, match="has no 'chain'"):
        cs.load_problem(_write(tmp_path, data))


# Sizes the solvers cannot represent


@pytest.mark.parametrize("solver", ["dp", "auto"])
def test_a_budget_beyond_machine_integers_is_refused_with_the_limit(solver: str) -> None:
    with pytest.raises(cs.InvalidBudgetError, match=r"more than 1152921504606846976 bytes"):
        cs.solve(CHAIN, 1e22, solver)


@pytest.mark.parametrize("solver", ["greedy", "ilp"])
def test_a_budget_beyond_machine_integers_is_refused_on_graphs(solver: str) -> None:
    with pytest.raises(cs.InvalidBudgetError, match=r"\(1 EiB\), the most the solvers"):
        cs.solve(random_dag(6, seed=0), 1e22, solver)


def test_a_size_beyond_machine_integers_is_refused() -> None:
    with pytest.raises(cs.InvalidProblemError, match=r"more than 1152921504606846976 \(2\*\*60"):
        cs.Chain(uf=[1.0], ub=[1.0], x=[10**19, 1], xbar=[1], of=[0], ob=[0])
    g = random_dag(3, seed=0)
    with pytest.raises(cs.InvalidProblemError, match=r"Graph\.out_bytes add up to"):
        cs.Graph(
            names=g.names,
            cost=g.cost,
            out_bytes=(10**19, 1, 1),
            is_backward=g.is_backward,
            edges=g.edges,
        )


def test_absurd_time_limits_are_refused() -> None:
    g = random_dag(6, seed=0)
    for solver in ("cpsat", "ilp", "ilp-rounding", "auto", "hierarchical"):
        with pytest.raises(cs.InvalidOptionError, match=r"time_limit=1000000000.0 must be seconds"):
            cs.solve(g, 10**6, solver, time_limit=1e9)


def test_mem_slots_beyond_memory_are_refused_before_allocating() -> None:
    with pytest.raises(cs.InvalidOptionError, match=r"available here; use mem_slots <= \d+"):
        cs.solve(CHAIN, "64GiB", "dp", mem_slots=100_000_000)


# Type checks at the API's edge


def test_paths_where_objects_belong_say_load_it_first(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    sched = cs.solve(CHAIN, "64GiB", "store_all")
    path = sched.save(tmp_path / "s.json")
    with pytest.raises(cs.InvalidArgumentError, match=r"got the path .*cs.load_schedule\(path\)"):
        cs.apply(torch.nn.Linear(2, 2), str(path))
    with pytest.raises(cs.InvalidArgumentError, match=r"cs.load_schedule\(path\)"):
        cs.simulate(CHAIN, str(path))  # type: ignore[arg-type]
    with pytest.raises(cs.InvalidArgumentError, match=r"cs.load_problem\(path\)"):
        cs.solve(str(path), "1GiB")  # type: ignore[arg-type]
    with pytest.raises(
        cs.InvalidArgumentError, match=r"takes a torch\.nn\.Module, got str 'model'"
    ):
        cs.profile("model", torch.randn(2, 2))
    # The same errors are TypeErrors for callers who catch those.
    with pytest.raises(TypeError):
        cs.min_budget(42)  # type: ignore[arg-type]


def test_a_factory_returning_names_or_raising_is_named(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from checkpoint_solver.cli.profile import build_model

    f = tmp_path / "factory.py"
    f.write_text(
        "def names():\n    return ('model', 'inputs')\n\ndef broken():\n    raise KeyError('w')\n"
    )
    with pytest.raises(cs.ProfilingError, match="returned str 'model' as the model"):
        build_model(f"{f}:names")
    with pytest.raises(cs.ProfilingError, match=r"the factory .* raised KeyError.* in the factory"):
        build_model(f"{f}:broken")


def test_nan_in_a_schedule_is_refused_on_load(tmp_path: Path) -> None:
    data = cs.solve(CHAIN, "64GiB", "store_all").to_dict()
    data["predicted"]["compute_time"] = math.nan
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))  # Python writes NaN, which is not JSON
    with pytest.raises(cs.ScheduleFormatError, match="holds NaN, which is not JSON"):
        cs.load_schedule(path)
    with pytest.raises(cs.ScheduleFormatError, match="predicted/compute_time = nan"):
        cs.Schedule.from_dict(data)


# Weak answers made exact


def test_budgets_negative_and_numpy() -> None:
    with pytest.raises(cs.InvalidBudgetError, match="'-5GiB' is negative"):
        cs.solve(CHAIN, "-5GiB")
    sched = cs.solve(CHAIN, np.int64(64 * 2**30), "store_all")
    assert sched.budget_bytes == 64 * 2**30
    with pytest.raises(cs.InvalidBudgetError, match="is a bool"):
        cs.solve(CHAIN, np.bool_(True))


@pytest.mark.parametrize("solver", ["ilp", "ilp-rounding", "greedy", "hierarchical", "dp"])
def test_every_infeasible_budget_names_the_minimum(solver: str) -> None:
    problem = CHAIN if solver == "dp" else random_dag(12, seed=3)
    options = {"time_limit": 30} if solver in ("ilp", "ilp-rounding") else {}
    low = cs.min_budget(problem, solver, **options)
    with pytest.raises(cs.InfeasibleBudgetError) as info:
        cs.solve(problem, max(1, low - 1), solver, **options)
    assert info.value.min_budget_bytes == low
    assert "at least that" in str(info.value)


# The CLI


def test_cli_json_errors_are_json_on_stdout_and_every_error_exits_1(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["solve", "example:transformer-chain", "-b", "1KiB", "--json"])
    assert r.exit_code == 1
    err = json.loads(r.stdout)["error"]
    assert err["type"] == "InfeasibleBudgetError" and err["min_budget_bytes"] > 1024
    assert "raise the budget" in err["hint"]
    r = runner.invoke(main, ["solve", "example:transformer-chain", "--no-such-flag"])
    assert r.exit_code == 1 and "No such option" in r.output  # usage errors: 1 as well
    r = runner.invoke(main, ["solve", "example:transformer-chain", "--no-such-flag", "--json"])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"]["type"] == "UsageError"
    r = runner.invoke(main, ["inspect", str(tmp_path), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["type"] in (
        "ScheduleFormatError",
        "UsageError",
    )


def test_cli_simulate_json_of_an_invalid_schedule_reports_no_overhead(tmp_path: Path) -> None:
    sched = cs.solve(CHAIN, "64GiB", "store_all")
    broken = sched.replace(ops=sched.ops[: len(sched.ops) // 2])
    path = tmp_path / "s.json"
    path.write_text(json.dumps(broken.to_dict()))
    prob = cs.save_problem(CHAIN, tmp_path / "p.json")
    r = CliRunner().invoke(main, ["simulate", str(prob), str(path), "--json"])
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert out["valid"] is False and out["overhead"] is None and out["recompute_time"] is None


def test_cli_mem_slots_beyond_memory_is_a_one_line_error() -> None:
    r = CliRunner().invoke(
        main,
        [
            "solve",
            "example:transformer-chain",
            "-b",
            "64GiB",
            "-s",
            "dp",
            "-o",
            "mem_slots=100000000",
        ],
    )
    assert r.exit_code == 1 and "InvalidOptionError" in r.output and "use mem_slots <=" in r.output


def test_copies_do_not_share_state() -> None:
    """(The node-link loader builds fresh objects: loading one dict twice gives equal graphs.)"""
    data = _node_link()
    a, b = cs.problem_from_dict(copy.deepcopy(data)), cs.problem_from_dict(data)
    assert a == b


def test_loaders_and_savers_check_what_they_are_given(tmp_path: Path) -> None:
    sched = cs.solve(CHAIN, "64GiB", "store_all")
    with pytest.raises(cs.InvalidArgumentError, match=r"takes a file path .*got int 123"):
        cs.load_schedule(123)  # type: ignore[arg-type]
    with pytest.raises(cs.InvalidArgumentError, match="takes a file path"):
        cs.load_problem(None)  # type: ignore[arg-type]
    with pytest.raises(cs.InvalidArgumentError, match="save_schedule takes a Schedule"):
        cs.save_schedule("not a schedule", tmp_path / "s.json")  # type: ignore[arg-type]
    with pytest.raises(cs.InvalidArgumentError, match="save_problem takes a problem"):
        cs.save_problem(sched, tmp_path / "p.json")  # type: ignore[arg-type]
    with pytest.raises(cs.ScheduleFormatError, match=r"predicted.compute_time is nan"):
        sched.replace(predicted=cs.Prediction(peak_bytes=1, compute_time=math.nan, overhead=0.0))
    with pytest.raises(cs.InvalidOptionError, match=r"points=0 must be an integer in 1..10000"):
        cs.tradeoff(CHAIN, solver="dp", points=0)
