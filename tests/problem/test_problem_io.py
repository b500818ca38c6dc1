"""Problems round-trip through versioned JSON."""

from __future__ import annotations

import json

import pytest

from checkpoint_solver import (
    ScheduleFormatError,
    load_problem,
    problem_from_dict,
    problem_to_dict,
    save_problem,
)
from checkpoint_solver.problem import example_names
from checkpoint_solver.problem.synthetic import random_chain, random_dag, transformer_chain


@pytest.mark.parametrize(
    "problem", [random_chain(7, seed=2, integer_times=False), random_dag(9, seed=1)]
)
def test_round_trip(tmp_path, problem) -> None:
    """save_problem then load_problem returns an equal problem."""
    path = save_problem(problem, tmp_path / "p.json")
    assert load_problem(path) == problem


def test_wrong_format_and_version(tmp_path) -> None:
    """Another format or an unsupported version raises ScheduleFormatError naming what is supported."""
    data = problem_to_dict(random_chain(3))
    with pytest.raises(ScheduleFormatError, match="expected 'checkpoint-problem'"):
        problem_from_dict({**data, "format": "other"})
    with pytest.raises(ScheduleFormatError, match="reads versions 1"):
        problem_from_dict({**data, "version": 2})


def test_schema_violation_names_the_field() -> None:
    """A negative size is reported at its JSON path."""
    data = problem_to_dict(random_chain(3))
    data["x"][1] = -4
    del data["fingerprint"]
    with pytest.raises(ScheduleFormatError, match=r"at x/1"):
        problem_from_dict(data)


def test_edited_file_is_detected() -> None:
    """A stored fingerprint that no longer matches the content is refused."""
    data = problem_to_dict(random_chain(3))
    data["xbar"][0] += 1
    with pytest.raises(ScheduleFormatError, match="was changed after it was written"):
        problem_from_dict(data)


def test_malformed_json(tmp_path) -> None:
    """A file that is not JSON raises ScheduleFormatError with the position."""
    p = tmp_path / "bad.json"
    p.write_text('{"format": "checkpoint-problem",')
    with pytest.raises(ScheduleFormatError, match=r"not valid JSON .* line 1"):
        load_problem(p)


def test_missing_file_and_example(tmp_path) -> None:
    """A missing file or unknown example raises FileNotFoundError saying what exists."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_problem(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="available: transformer-chain"):
        load_problem("example:nope")


def test_bundled_examples_match_their_generators() -> None:
    """The bundled transformer chain is exactly what its generator gives."""
    assert "transformer-chain" in example_names()
    assert load_problem("example:transformer-chain") == transformer_chain(6)
    assert load_problem("example:vgg16-graph").size == 45


def test_problem_json_is_byte_stable(tmp_path) -> None:
    """Saving the same problem twice gives identical bytes with sorted keys."""
    c = random_chain(5, seed=9)
    a = save_problem(c, tmp_path / "a.json").read_bytes()
    b = save_problem(c, tmp_path / "b.json").read_bytes()
    assert a == b
    assert list(json.loads(a)) == sorted(json.loads(a))
