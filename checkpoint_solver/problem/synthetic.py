"""Deterministic synthetic problems for tests, benchmarks, docs and the bundled examples.

Every generator takes explicit sizes and a `seed`; the same arguments give the same problem on
every machine (`random.Random`, whose integer and float streams are stable across Python versions).
"""

from __future__ import annotations

import random

from checkpoint_solver.errors import InvalidProblemError
from checkpoint_solver.problem.chain import Chain
from checkpoint_solver.problem.graph import Graph

__all__ = [
    "diamond_graph",
    "linear_graph",
    "random_chain",
    "random_dag",
    "transformer_chain",
    "uniform_chain",
]


def _check_length(length: int, what: str = "length") -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise InvalidProblemError(f"{what} must be an integer >= 0, got {length!r}")


def uniform_chain(
    length: int,
    *,
    uf: float = 1.0,
    ub: float = 1.0,
    x: int = 1,
    xbar: int | None = None,
    of: int = 0,
    ob: int = 0,
) -> Chain:
    """A chain of `length` identical stages (Revolve's setting); cost unit "abstract".

    Examples
    --------
    >>> uniform_chain(3).is_uniform
    True
    """
    _check_length(length)
    return Chain(
        uf=(uf,) * length,
        ub=(ub,) * length,
        x=(x,) * (length + 1),
        xbar=((x if xbar is None else xbar),) * length,
        of=(of,) * length,
        ob=(ob,) * length,
        cost_unit="abstract",
        name=f"uniform-{length}",
    )


def random_chain(
    length: int,
    *,
    seed: int = 0,
    max_time: int = 10,
    max_bytes: int = 10,
    overheads: bool = True,
    integer_times: bool = True,
) -> Chain:
    """A chain with random heterogeneous costs and sizes.

    Sizes are integers in ``[0, max_bytes]`` (``xbar[i]`` is ``x[i]`` plus a random extra, so the
    tape includes the output); times are in ``[0, max_time]`` (integers when `integer_times`, which
    keeps sums exact for brute-force comparisons).
    """
    _check_length(length)
    rng = random.Random(seed)

    def t() -> float:
        return float(rng.randint(0, max_time)) if integer_times else rng.uniform(0, max_time)

    x = tuple(rng.randint(0, max_bytes) for _ in range(length + 1))
    return Chain(
        uf=tuple(t() for _ in range(length)),
        ub=tuple(t() for _ in range(length)),
        x=x,
        xbar=tuple(x[i + 1] + rng.randint(0, max_bytes) for i in range(length)),
        of=tuple(rng.randint(0, max_bytes // 2) if overheads else 0 for _ in range(length)),
        ob=tuple(rng.randint(0, max_bytes // 2) if overheads else 0 for _ in range(length)),
        cost_unit="abstract",
        name=f"random-{length}-seed{seed}",
    )


def transformer_chain(
    n_layers: int,
    *,
    batch: int = 8,
    seq: int = 1024,
    hidden: int = 1024,
    heads: int = 16,
    vocab: int = 50257,
    bytes_per_value: int = 2,
    flops_per_second: float = 100e12,
) -> Chain:
    """A GPT-style chain: embedding, then an attention and an MLP stage per layer, then the head.

    Sizes follow the per-layer activation count of Korthikanti et al. 2022 (``34·s·b·h`` values
    plus ``5·a·s²·b`` for attention scores, split between the attention and MLP stages); times are
    matmul FLOPs divided by `flops_per_second`, backward twice the forward. A model of what a real
    profile looks like, for benchmarks and examples, not a measurement.
    """
    _check_length(n_layers, "n_layers")
    sbh = seq * batch * hidden
    act = sbh * bytes_per_value
    attn_tape = 11 * sbh * bytes_per_value + 5 * heads * seq * seq * batch
    mlp_tape = 19 * sbh * bytes_per_value
    attn_flops = 8 * batch * seq * hidden**2 + 4 * batch * seq**2 * hidden
    mlp_flops = 16 * batch * seq * hidden**2
    head_flops = 2 * batch * seq * hidden * vocab
    logits = batch * seq * vocab * 4
    uf: list[float] = [batch * seq * hidden / flops_per_second * 50]
    x: list[int] = [batch * seq * 8, act]
    xbar: list[int] = [act]
    of: list[int] = [0]
    ob: list[int] = [act]
    for _ in range(n_layers):
        uf += [attn_flops / flops_per_second, mlp_flops / flops_per_second]
        x += [act, act]
        xbar += [attn_tape, mlp_tape]
        of += [2 * heads * seq * seq * batch, 4 * act]
        ob += [3 * heads * seq * seq * batch, 8 * act]
    uf.append(head_flops / flops_per_second)
    x.append(logits)
    xbar.append(logits + act)
    of.append(logits)
    ob.append(logits)
    return Chain(
        uf=tuple(uf),
        ub=tuple(2 * t for t in uf),
        x=tuple(x),
        xbar=tuple(xbar),
        of=tuple(of),
        ob=tuple(ob),
        cost_unit="seconds",
        name=f"transformer-{n_layers}L-b{batch}-s{seq}-h{hidden}",
    )


def linear_graph(n: int, *, cost: float = 1.0, out_bytes: int = 1) -> Graph:
    """A training graph of a linear network: ``n`` forward ops, then ``n`` backward ops.

    Backward op ``k`` (for forward op ``n-1-k``) reads the previous gradient and the forward output
    it differentiates, like Checkmate's training graphs.
    """
    _check_length(n, "n")
    names = [f"f{i}" for i in range(n)] + [f"b{n - 1 - k}" for k in range(n)]
    edges = [(i, i + 1) for i in range(2 * n - 1)]
    for k in range(n):
        fwd = n - 1 - k
        bwd = n + k
        if fwd - 1 >= 0:
            edges.append((fwd - 1, bwd))
    return Graph(
        names=tuple(names),
        cost=(cost,) * (2 * n),
        out_bytes=(out_bytes,) * (2 * n),
        is_backward=(False,) * n + (True,) * n,
        edges=tuple(edges),
        cost_unit="abstract",
        name=f"linear-{n}",
    )


def diamond_graph(*, cost: float = 1.0, out_bytes: int = 1) -> Graph:
    """Four nodes: ``a -> (b, c) -> d``; the smallest graph with two paths."""
    return Graph(
        names=("a", "b", "c", "d"),
        cost=(cost,) * 4,
        out_bytes=(out_bytes,) * 4,
        is_backward=(False, False, False, True),
        edges=((0, 1), (0, 2), (1, 3), (2, 3)),
        cost_unit="abstract",
        name="diamond",
    )


def random_dag(
    n: int,
    *,
    seed: int = 0,
    edge_prob: float = 0.3,
    max_cost: int = 10,
    max_bytes: int = 10,
) -> Graph:
    """A random DAG on ``n`` nodes numbered in topological order, connected in order.

    Node ``v > 0`` always reads ``v - 1`` (so the graph is weakly connected) and each earlier node
    with probability `edge_prob`. The second half of the nodes is marked backward. Costs and sizes
    are integers in ``[1, max_cost]`` and ``[1, max_bytes]``.
    """
    _check_length(n, "n")
    rng = random.Random(seed)
    edges = []
    for v in range(1, n):
        edges.append((v - 1, v))
        edges.extend((u, v) for u in range(v - 1) if rng.random() < edge_prob)
    return Graph(
        names=tuple(f"n{i}" for i in range(n)),
        cost=tuple(float(rng.randint(1, max_cost)) for _ in range(n)),
        out_bytes=tuple(rng.randint(1, max_bytes) for _ in range(n)),
        is_backward=tuple(i >= n // 2 for i in range(n)),
        edges=tuple(edges),
        cost_unit="abstract",
        name=f"random-dag-{n}-seed{seed}",
    )
