"""Fingerprints cover structure and sizes, never timings."""

from __future__ import annotations

from dataclasses import replace

from checkpoint_solver import fingerprint
from checkpoint_solver.problem.synthetic import random_chain, random_dag


def test_chain_fingerprint_ignores_times_and_names() -> None:
    """Changing times or the name keeps the fingerprint; changing a size changes it."""
    c = random_chain(6, seed=1)
    assert fingerprint(replace(c, uf=tuple(t + 1 for t in c.uf), name="other")) == fingerprint(c)
    assert fingerprint(replace(c, ob=(c.ob[0] + 1, *c.ob[1:]))) != fingerprint(c)
    assert fingerprint(random_chain(7, seed=1)) != fingerprint(c)


def test_graph_fingerprint_ignores_costs() -> None:
    """Changing costs keeps a graph's fingerprint; changing an edge set changes it."""
    g = random_dag(10, seed=2)
    assert fingerprint(replace(g, cost=tuple(c * 2 for c in g.cost))) == fingerprint(g)
    assert fingerprint(replace(g, edges=g.edges[1:])) != fingerprint(g)


def test_fingerprint_format_is_stable() -> None:
    """Fingerprints are sha256 hex strings and identical across calls."""
    c = random_chain(4, seed=0)
    fp = fingerprint(c)
    assert fp.startswith("sha256:") and len(fp) == 7 + 64
    assert fp == fingerprint(random_chain(4, seed=0))
