"""What is being solved: the `Chain` and `Graph` problem models, their JSON and fingerprints."""

from __future__ import annotations

from typing import TypeAlias

from checkpoint_solver.problem.chain import BoundaryValue, Chain, CostUnit
from checkpoint_solver.problem.fingerprint import fingerprint
from checkpoint_solver.problem.graph import Graph, RngPolicy, Role
from checkpoint_solver.problem.io import (
    example_names,
    load_problem,
    problem_from_dict,
    problem_to_dict,
    save_problem,
)
from checkpoint_solver.problem.states import ModelStates, step_floor, whole_step_chain

Problem: TypeAlias = Chain | Graph

__all__ = [
    "BoundaryValue",
    "Chain",
    "CostUnit",
    "Graph",
    "ModelStates",
    "Problem",
    "RngPolicy",
    "Role",
    "example_names",
    "fingerprint",
    "load_problem",
    "problem_from_dict",
    "problem_to_dict",
    "save_problem",
    "step_floor",
    "whole_step_chain",
]
