"""The issue's checklist of bad inputs: each raises a typed error whose message says what to do."""

from __future__ import annotations

import json
import math

import networkx as nx
import pytest

import checkpoint_solver as cs
from checkpoint_solver.problem.synthetic import transformer_chain, uniform_chain

CHAIN = transformer_chain(2)


def _schedule_file(tmp_path, mutate=None):
    s = cs.solve(CHAIN, "64GiB", "store_all")
    data = s.to_dict()
    if mutate:
        mutate(data)
    p = tmp_path / "s.json"
    p.write_text(json.dumps(data))
    return p


def _cyclic():
    g = nx.DiGraph()
    g.add_nodes_from([(v, {"cost": 1, "out_bytes": 1}) for v in "ab"])
    g.add_edges_from([("a", "b"), ("b", "a")])
    return cs.Graph.from_networkx(g)


CASES = [
    (
        "negative budget",
        lambda tmp: cs.solve(CHAIN, -1),
        cs.InvalidBudgetError,
        "positive number of bytes",
    ),
    (
        "zero budget",
        lambda tmp: cs.solve(CHAIN, 0),
        cs.InvalidBudgetError,
        "positive number of bytes",
    ),
    ("NaN budget", lambda tmp: cs.solve(CHAIN, math.nan), cs.InvalidBudgetError, "not finite"),
    (
        "unparseable budget",
        lambda tmp: cs.solve(CHAIN, "six gigs"),
        cs.InvalidBudgetError,
        '"6GiB"',
    ),
    (
        "budget below minimum",
        lambda tmp: cs.solve(CHAIN, "1MiB", "sqrt"),
        cs.InfeasibleBudgetError,
        "raise the budget to at least",
    ),
    (
        "malformed JSON",
        lambda tmp: cs.load_schedule(_write(tmp, "{oops")),
        cs.ScheduleFormatError,
        "regenerate it or fix",
    ),
    (
        "wrong format",
        lambda tmp: cs.load_schedule(_schedule_file(tmp, lambda d: d.update(format="x"))),
        cs.ScheduleFormatError,
        "expected 'checkpoint-schedule'",
    ),
    (
        "wrong version",
        lambda tmp: cs.load_schedule(_schedule_file(tmp, lambda d: d.update(version=99))),
        cs.ScheduleFormatError,
        "upgrade checkpoint_solver or re-solve",
    ),
    (
        "schema violation",
        lambda tmp: cs.load_schedule(
            _schedule_file(tmp, lambda d: d["predicted"].update(peak_bytes="big"))
        ),
        cs.ScheduleFormatError,
        "at predicted/peak_bytes",
    ),
    (
        "schedule for another problem",
        lambda tmp: cs.simulate(uniform_chain(6), cs.solve(CHAIN, "64GiB")),
        cs.FingerprintMismatchError,
        "re-solve for this problem",
    ),
    ("cyclic graph", lambda tmp: _cyclic(), cs.InvalidProblemError, "must be acyclic"),
    (
        "chain with mismatched lengths",
        lambda tmp: cs.Chain(uf=(1,), ub=(1, 2), x=(1, 1), xbar=(1,), of=(0,), ob=(0,)),
        cs.InvalidProblemError,
        "needs 1",
    ),
    (
        "chain with negative sizes",
        lambda tmp: cs.Chain(uf=(1,), ub=(1,), x=(1, -1), xbar=(1,), of=(0,), ob=(0,)),
        cs.InvalidProblemError,
        "must be >= 0",
    ),
    (
        "unknown solver",
        lambda tmp: cs.solve(CHAIN, "8GiB", "fastest"),
        cs.UnknownSolverError,
        "the solvers for chain problems are",
    ),
    (
        "unknown option",
        lambda tmp: cs.solve(CHAIN, "8GiB", "uniform", segs=2),
        cs.UnknownOptionError,
        "its options are: segments",
    ),
    (
        "unwritable output path",
        lambda tmp: cs.solve(CHAIN, "64GiB").save(tmp / "no" / "such" / "dir.json"),
        OSError,
        "choose a writable folder",
    ),
]


def _write(tmp, text):
    p = tmp / "bad.json"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("what", "call", "error", "hint"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, what, call, error, hint) -> None:
    """Each bad input raises its typed error with a message that says what would work."""
    with pytest.raises(error) as info:
        call(tmp_path)
    assert hint in str(info.value)
    assert isinstance(info.value, (cs.CheckpointSolverError, OSError))


def test_minimum_named_by_the_error_solves() -> None:
    """The minimum carried by InfeasibleBudgetError is itself a feasible budget."""
    with pytest.raises(cs.InfeasibleBudgetError) as info:
        cs.solve(CHAIN, "1MiB", "uniform")
    low = info.value.min_budget_bytes
    assert low is not None and cs.solve(CHAIN, low, "uniform").predicted.peak_bytes <= low


def test_nothing_half_written(tmp_path) -> None:
    """A failed save leaves no file and no temporary file in the target folder."""
    with pytest.raises(OSError):
        cs.solve(CHAIN, "64GiB").save(tmp_path / "missing" / "s.json")
    assert list(tmp_path.iterdir()) == []
