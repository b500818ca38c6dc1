"""Versioned JSON for problems: ``{"format": "checkpoint-problem", "version": 1, ...}``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from checkpoint_solver._args import expect_path, expect_problem
from checkpoint_solver._io import canonical_json, check_header, load_json, validate, write_atomic
from checkpoint_solver.errors import FileFormatError, InvalidProblemError
from checkpoint_solver.problem.chain import Chain
from checkpoint_solver.problem.fingerprint import fingerprint
from checkpoint_solver.problem.graph import Graph

__all__ = [
    "PROBLEM_FORMAT",
    "PROBLEM_VERSIONS",
    "example_names",
    "load_problem",
    "problem_from_dict",
    "problem_to_dict",
    "save_problem",
]

PROBLEM_FORMAT = "checkpoint-problem"
PROBLEM_VERSIONS = (1,)


def problem_to_dict(problem: Chain | Graph) -> dict[str, Any]:
    """Return the versioned JSON object of `problem`, with its fingerprint."""
    body = problem.to_dict()
    body.update(format=PROBLEM_FORMAT, version=1, fingerprint=fingerprint(problem))
    return body


def problem_from_dict(data: Mapping[str, Any], *, source: str = "problem") -> Chain | Graph:
    """Build a problem from a versioned JSON object, from networkx node-link graph JSON, or from a
    profile (`checkpoint_solver.profiling.Profile` JSON: its chain).

    Raises
    ------
    FileFormatError
        Wrong format or version, a schema violation, or a stored fingerprint that does not match
        the content (the file was edited by hand).
    InvalidProblemError
        When the content parses but is inconsistent (mismatched lengths, a cycle, ...).
    """
    if not isinstance(data, Mapping):
        raise FileFormatError(f"{source} must be a JSON object, got {type(data).__name__}")
    if "format" not in data and "kind" in data:
        raise FileFormatError(
            f"{source} has no 'format' field but looks like a checkpoint-problem file (it has "
            f'\'kind\'); regenerate it, or add "format": "{PROBLEM_FORMAT}", "version": 1'
        )
    if "format" not in data and "nodes" in data:
        try:
            return Graph.from_node_link(data)
        except InvalidProblemError as exc:
            raise InvalidProblemError(f"{source}: {exc}") from None
    if data.get("format") == "checkpoint_solver.profile":
        from checkpoint_solver.problem.profile import Profile

        return Profile.from_dict(data, source=source).chain
    check_header(
        dict(data),
        PROBLEM_FORMAT,
        PROBLEM_VERSIONS,
        source,
        other_format_hint="(or networkx node-link graph JSON with 'nodes' and 'links')",
        upgrade_hint="",
    )
    validate(dict(data), "checkpoint_solver.problem", "problem.v1.schema.json", source)
    try:
        problem: Chain | Graph = (
            Chain.from_dict(data) if data["kind"] == "chain" else Graph.from_dict(data)
        )
    except InvalidProblemError as exc:
        raise InvalidProblemError(f"{source}: {exc}") from None
    stored = data.get("fingerprint")
    if stored is not None and stored != fingerprint(problem):
        raise FileFormatError(
            f"{source} says fingerprint {stored} but its content hashes to {fingerprint(problem)}; "
            f"the file was changed after it was written: regenerate it, or delete the "
            f"'fingerprint' field to accept the new content"
        )
    return problem


def save_problem(problem: Chain | Graph, path: str | os.PathLike[str]) -> Path:
    """Write `problem` as versioned JSON, atomically."""
    expect_problem(problem, "save_problem")
    expect_path(path, "save_problem")
    return write_atomic(path, canonical_json(problem_to_dict(problem)))


def example_names() -> list[str]:
    """Names of the example problems shipped with the package (usable as ``example:NAME``)."""
    folder = resources.files("checkpoint_solver.examples")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_problem(path: str | os.PathLike[str]) -> Chain | Graph:
    """Load a problem from a JSON file, or a bundled example given as ``"example:NAME"``.

    Examples
    --------
    >>> chain = load_problem("example:transformer-chain")
    >>> chain.kind, chain.length
    ('chain', 14)
    """
    expect_path(path, "load_problem")
    text = str(path)
    if text.startswith("example:"):
        name = text[len("example:") :]
        if name not in example_names():
            raise FileNotFoundError(
                f"no bundled example {name!r}; available: {', '.join(example_names())}"
            )
        ref = resources.files("checkpoint_solver.examples").joinpath(f"{name}.json")
        with resources.as_file(ref) as real:
            return problem_from_dict(load_json(real, "problem"), source=f"example {name}")
    return problem_from_dict(load_json(path, "problem"), source=f"problem file {path}")
