"""Hypothesis strategies for problems and budgets."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

from checkpoint_solver.problem import Chain, Graph

sizes = st.integers(min_value=0, max_value=20)
times = st.integers(min_value=0, max_value=10).map(float)


@st.composite
def chains(draw: st.DrawFn, min_length: int = 0, max_length: int = 12) -> Chain:
    """Heterogeneous chains with small integer sizes and times (exact arithmetic)."""
    n = draw(st.integers(min_value=min_length, max_value=max_length))
    x = draw(st.lists(sizes, min_size=n + 1, max_size=n + 1))
    extra = draw(st.lists(sizes, min_size=n, max_size=n))
    return Chain(
        uf=tuple(draw(st.lists(times, min_size=n, max_size=n))),
        ub=tuple(draw(st.lists(times, min_size=n, max_size=n))),
        x=tuple(x),
        xbar=tuple(x[i + 1] + extra[i] for i in range(n)),
        of=tuple(draw(st.lists(sizes, min_size=n, max_size=n))),
        ob=tuple(draw(st.lists(sizes, min_size=n, max_size=n))),
        cost_unit="abstract",
    )


@st.composite
def uniform_chains(draw: st.DrawFn, max_length: int = 30) -> Chain:
    """Chains whose stages are all equal (Revolve's setting)."""
    from checkpoint_solver.problem.synthetic import uniform_chain

    n = draw(st.integers(min_value=0, max_value=max_length))
    x = draw(st.integers(min_value=1, max_value=8))
    return uniform_chain(
        n,
        x=x,
        xbar=x + draw(st.integers(min_value=0, max_value=8)),
        of=draw(st.integers(min_value=0, max_value=4)),
        ob=draw(st.integers(min_value=0, max_value=4)),
    )


@st.composite
def graphs(draw: st.DrawFn, max_nodes: int = 14) -> Graph:
    """DAGs numbered in topological order, with some inputs/params and random ops."""
    n = draw(st.integers(min_value=1, max_value=max_nodes))
    n_sources = draw(st.integers(min_value=0, max_value=min(2, n - 1)))
    edges = []
    for v in range(n_sources, n):
        preds = draw(st.sets(st.integers(min_value=0, max_value=v - 1), max_size=3)) if v else set()
        edges.extend((u, v) for u in preds)
    roles = ["input"] * n_sources + ["op"] * (n - n_sources)
    rng = ["none"] * n
    if n > n_sources and draw(st.booleans()):
        rng[draw(st.integers(min_value=n_sources, max_value=n - 1))] = "forbid_recompute"
    return Graph(
        names=tuple(f"n{i}" for i in range(n)),
        cost=tuple(draw(st.lists(times, min_size=n, max_size=n))),
        out_bytes=tuple(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))),
        is_backward=tuple(i >= n // 2 for i in range(n)),
        edges=tuple(edges),
        rng=tuple(rng),
        role=tuple(roles),
        sources_in_budget=draw(st.booleans()),
        cost_unit="abstract",
    )


def feasible_budgets(low: int, high: int) -> st.SearchStrategy[int]:
    """Budgets from the minimum `low` to a bit above `high` (the store-all peak)."""
    low = max(low, 1)
    return st.one_of(
        st.just(low),
        st.integers(min_value=low, max_value=max(low, high) + 5),
    )


def solver_options(solver: str) -> dict[str, object]:
    """The options a solver cannot run without: dp-offload's and ilp-offload's link (copies
    about as fast as a stage of `chains()` or a node of `graphs()` computes, so that offloading
    is worth something and waits happen)."""
    if solver in ("dp-offload", "ilp-offload"):
        from checkpoint_solver.schedule import HostLink

        return {"link": HostLink(d2h_bytes_per_s=20.0, h2d_bytes_per_s=30.0)}
    return {}


def assert_offload_never_slower(
    problem: Any, budgets: Iterable[int], plain: str, offload: str, link: Any
) -> None:
    """At each budget the `offload` solver's schedule (over `link`) is valid within the budget
    and its step time, waits included, at most the `plain` solver's compute time."""
    import checkpoint_solver as cs

    for budget in budgets:
        base = cs.solve(problem, budget, plain)
        off = cs.solve(problem, budget, offload, link=link)
        r = cs.simulate(problem, off)
        assert r.valid and r.peak_bytes <= budget, (budget, r.violation)
        assert r.step_time <= base.predicted.compute_time * (1 + 1e-9), budget


def applicable(solver: str, problem: object) -> bool:
    """Whether `solver` accepts this particular problem (e.g. revolve needs a uniform chain)."""
    from checkpoint_solver.solvers._registry import REGISTRY

    return REGISTRY[solver].requires(problem) is None  # type: ignore[arg-type]


@st.composite
def chains_with_values(draw: st.DrawFn, min_length: int = 3, max_length: int = 8) -> Chain:
    """Chains whose boundaries are made of values: each boundary's carried activation (made by
    one stage, read and saved by the next) and one or two long-lived values (a mask, a skip, an
    encoder output) made by an early stage and read by later ones or held to the end."""
    from checkpoint_solver.problem.chain import BoundaryValue

    n = draw(st.integers(min_value=min_length, max_value=max_length))
    carried = draw(st.lists(st.integers(1, 20), min_size=n - 1, max_size=n - 1))
    values = [BoundaryValue(carried[k - 1], k, (k + 1,), (k + 1,)) for k in range(1, n)]
    for _ in range(draw(st.integers(1, 2))):
        producer = draw(st.integers(1, n - 2))
        later = list(range(producer + 1, n + 1))
        readers = tuple(sorted(draw(st.sets(st.sampled_from(later), max_size=3))))
        held = 0 if readers and draw(st.booleans()) else n
        values.append(BoundaryValue(draw(st.integers(1, 40)), producer, readers, readers, held))
    crossing = [0] * (n + 1)
    for v in values:
        for k in range(v.producer, max(v.held, v.last)):
            crossing[k] += v.nbytes
    x = [draw(sizes)] + [crossing[k] for k in range(1, n)] + [draw(st.integers(0, 4))]
    extra = draw(st.lists(sizes, min_size=n, max_size=n))
    return Chain(
        uf=tuple(draw(st.lists(times, min_size=n, max_size=n))),
        ub=tuple(draw(st.lists(times, min_size=n, max_size=n))),
        x=tuple(x),
        xbar=tuple(max(x[i + 1], crossing[i + 1]) + extra[i] for i in range(n)),
        of=tuple(draw(st.lists(sizes, min_size=n, max_size=n))),
        ob=tuple(draw(st.lists(sizes, min_size=n, max_size=n))),
        cost_unit="abstract",
        values=tuple(values),
    )
