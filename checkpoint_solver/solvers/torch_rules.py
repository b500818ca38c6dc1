"""Deprecated alias of `checkpoint_solver.solvers.baseline_plans` (renamed: it is no solver and
runs no torch; it writes torch's checkpointing rules as chain plans). Importing it warns; it will
be removed in a later release."""

from __future__ import annotations

import warnings

from checkpoint_solver.solvers.baseline_plans import (
    fastest_rule,
    offload_ops,
    offload_per_block,
    offload_rule_plans,
    offload_saved,
    profile_blocks,
    rule_candidates,
    rule_ops,
    rule_plans,
    torch_per_block,
    torch_sequential,
)

__all__ = [
    "fastest_rule",
    "offload_ops",
    "offload_per_block",
    "offload_rule_plans",
    "offload_saved",
    "profile_blocks",
    "rule_candidates",
    "rule_ops",
    "rule_plans",
    "torch_per_block",
    "torch_sequential",
]

warnings.warn(
    "checkpoint_solver.solvers.torch_rules is now checkpoint_solver.solvers.baseline_plans; "
    "import it from there",
    DeprecationWarning,
    stacklevel=2,
)
