"""Mutation fuzz over every loader: a mutated valid file either loads into a valid object or raises
a `CheckpointSolverError` subclass, never anything else (no KeyError, TypeError, RecursionError,
UnicodeDecodeError, OverflowError from inside).

Valid files of each kind (schedules of both kinds, versioned problems of both kinds, networkx
node-link graphs, profiles) are mutated: a key deleted, a value replaced by another JSON type
(null, booleans, numbers around the machine-integer limits, NaN and infinities, strings, lists,
objects), bytes flipped, the text truncated. Derandomised, bounded examples: the same cases on
every run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import checkpoint_solver as cs
from checkpoint_solver.problem.profile import Profile, StageInfo
from checkpoint_solver.problem.synthetic import transformer_chain

REPLACEMENTS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**63,
    -(2**63),
    10**19,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "x",
    "false",
    [],
    [1, 2],
    {},
    {"a": 1},
]


def _graph() -> cs.Graph:
    g = nx.DiGraph()
    for k, name in enumerate("abcde"):
        g.add_node(name, cost=1.0 + k, out_bytes=8 * (k + 1), is_backward=k >= 3)
    g.add_edges_from([("a", "b"), ("b", "c"), ("c", "d"), ("b", "d"), ("d", "e"), ("a", "e")])
    return cs.Graph.from_networkx(g, name="five")


def _valid_files() -> dict[str, tuple[Any, str]]:
    chain = transformer_chain(3)
    graph = _graph()
    chain_sched = cs.solve(chain, cs.min_budget(chain, "dp"), "dp")
    graph_sched = cs.solve(graph, 10**6, "greedy")
    node_link = {
        "directed": True,
        "graph": {"name": "five", "order": ["a", "b", "c", "d", "e"]},
        "nodes": [
            {"id": n, "cost": 1.0, "out_bytes": 8, "is_backward": n in "de", "block": k}
            for k, n in enumerate("abcde")
        ],
        "links": [{"source": u, "target": v} for u, v in [("a", "b"), ("b", "c"), ("c", "d")]]
        + [{"source": "d", "target": "e"}],
    }
    profile = Profile(
        chain=chain,
        stages=tuple(StageInfo(name=f"s{k}", modules=(f"m{k}",)) for k in range(chain.length)),
        source={"torch": "2.13.0", "device": "cpu"},
        measurement={"input_bytes": 64},
    )
    return {
        "chain schedule": (chain_sched.to_dict(), "schedule"),
        "graph schedule": (graph_sched.to_dict(), "schedule"),
        "chain problem": (cs.problem_to_dict(chain), "problem"),
        "graph problem": (cs.problem_to_dict(graph), "problem"),
        "node-link graph": (node_link, "problem"),
        "profile": (profile.to_dict(), "profile"),
    }


FILES = _valid_files()


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into `obj` (objects and lists), the root excluded."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):  # the first items stand for the rest
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _mutated(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    data = json.loads(json.dumps(data))
    parent = data
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if action == "delete":
        del parent[last]
    else:
        parent[last] = value
    return data


def _load(kind: str, path: Path) -> object:
    if kind == "schedule":
        return cs.load_schedule(path)
    if kind == "profile":
        return Profile.load(path)
    return cs.load_problem(path)


def _from_dict(kind: str, data: Any) -> object:
    if kind == "schedule":
        return cs.Schedule.from_dict(data)
    if kind == "profile":
        return Profile.from_dict(data)
    return cs.problem_from_dict(data)


def _ends_well(fn: Any) -> None:
    try:
        result = fn()
    except cs.CheckpointSolverError:
        return
    except FileNotFoundError:
        return
    assert isinstance(result, (cs.Chain, cs.Graph, cs.Schedule, Profile))


@st.composite
def _tree_mutations(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(FILES)))
    data = FILES[name][0]
    path = draw(st.sampled_from(_paths(data)))
    action = draw(st.sampled_from(["delete", "replace"]))
    value = draw(st.sampled_from(REPLACEMENTS))
    return name, _mutated(data, path, action, value)


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=_tree_mutations())
def test_mutated_fields_load_or_raise_a_typed_error(case: tuple[str, Any], tmp_path: Path) -> None:
    name, data = case
    kind = FILES[name][1]
    _ends_well(lambda: _from_dict(kind, data))
    path = tmp_path / "f.json"
    path.write_text(json.dumps(data, allow_nan=True))  # NaN and infinities as Python writes them
    _ends_well(lambda: _load(kind, path))


@st.composite
def _byte_mutations(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(FILES)))
    raw = json.dumps(FILES[name][0]).encode()
    how = draw(st.sampled_from(["flip", "truncate", "insert"]))
    at = draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    elif how == "truncate":
        raw = raw[:at]
    else:
        raw = (
            raw[:at] + draw(st.sampled_from([b"\xff\xfe", b"[", b"}", b"\x00", b"NaN"])) + raw[at:]
        )
    return name, raw


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=_byte_mutations())
def test_corrupted_bytes_load_or_raise_a_typed_error(
    case: tuple[str, bytes], tmp_path: Path
) -> None:
    name, raw = case
    path = tmp_path / "f.json"
    path.write_bytes(raw)
    _ends_well(lambda: _load(FILES[name][1], path))


@pytest.mark.parametrize("kind", ["schedule", "problem", "profile"])
def test_every_loader_survives_deep_nesting_and_non_utf8(kind: str, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(cs.ScheduleFormatError, match="too deeply"):
        _load(kind, deep)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(cs.ScheduleFormatError, match="not UTF-8"):
        _load(kind, latin)
    with pytest.raises(cs.ScheduleFormatError, match="is a folder"):
        _load(kind, tmp_path)
