"""Canonical fingerprints of problems: a hash of structure and sizes, never of timings.

Two profiles of the same model on different runs (different measured times) share a fingerprint;
changing a tensor size, the number of stages or an edge changes it. A schedule records the
fingerprint of the problem it was solved for, and is refused for any other.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from checkpoint_solver.problem import Problem

__all__ = ["fingerprint", "structure"]


def structure(problem: Problem) -> dict[str, Any]:
    """Return the part of `problem` the fingerprint covers (kind, structure, sizes)."""
    if problem.kind == "chain":
        return {
            "kind": "chain",
            "x": list(problem.x),
            "xbar": list(problem.xbar),
            "of": list(problem.of),
            "ob": list(problem.ob),
            # Only where it differs from `of`: chains from before `ofn` keep their fingerprints.
            **({"ofn": list(problem.ofn)} if problem.ofn != problem.of else {}),
            **({"delta": list(problem.delta)} if problem.delta != problem.x else {}),
            **({"values": [c.to_list() for c in problem.values]} if problem.values else {}),
        }
    return {
        "kind": "graph",
        "out_bytes": list(problem.out_bytes),
        "is_backward": list(problem.is_backward),
        "rng": list(problem.rng),
        "role": list(problem.role),
        "edges": [list(e) for e in problem.edges],
        "sources_in_budget": problem.sources_in_budget,
    }


def fingerprint(problem: Problem) -> str:
    """Return ``"sha256:<hex>"`` of the canonical JSON of `structure(problem)`.

    Examples
    --------
    >>> from checkpoint_solver.problem import Chain
    >>> a = Chain(uf=(1.0,), ub=(2.0,), x=(4, 4), xbar=(8,), of=(0,), ob=(0,))
    >>> b = Chain(uf=(9.0,), ub=(9.0,), x=(4, 4), xbar=(8,), of=(0,), ob=(0,))
    >>> fingerprint(a) == fingerprint(b)
    True
    """
    text = json.dumps(structure(problem), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
