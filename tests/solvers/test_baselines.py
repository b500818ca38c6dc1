"""Baseline solvers: segment semantics, hand-computed costs, reference graphs."""

from __future__ import annotations

import json

import pytest

from checkpoint_solver import load_problem, simulate, solve
from checkpoint_solver.problem.synthetic import uniform_chain
from checkpoint_solver.schedule import FwdCheckpoint, FwdNoTape, FwdTape

CHECKMATE = [
    "vgg16_train",
    "vgg19_train",
    "fcn8_vgg_train",
    "mobilenet_train",
    "random_layered_n100",
    "random_layered_n250",
]


def test_uniform_segments_follow_checkpoint_sequential() -> None:
    """L=7, k=3: torch.utils.checkpoint.checkpoint_sequential checkpoints stages 1-2 and 3-4, runs 5-7 with tape."""
    chain = uniform_chain(7)
    s = solve(chain, 10**6, "uniform", segments=3)
    forward = s.ops[: s.ops.index(FwdTape(7)) + 1]
    assert forward == (
        FwdCheckpoint(1),
        FwdNoTape(2),
        FwdCheckpoint(3),
        FwdNoTape(4),
        FwdTape(5),
        FwdTape(6),
        FwdTape(7),
    )
    # Each of the 4 checkpointed stages is recomputed once: 14 + 4 forward steps.
    assert s.predicted.compute_time == 14 + 4


def test_uniform_k1_is_store_all() -> None:
    """One segment means no checkpointing at all."""
    chain = uniform_chain(5, x=3)
    assert solve(chain, 10**6, "uniform", segments=1).ops == solve(chain, 10**6, "store_all").ops


def test_sqrt_uses_round_sqrt_segments() -> None:
    """sqrt picks round(sqrt(L)) segments: 16 stages -> 4, 10 stages -> 3."""
    assert solve(uniform_chain(16), 10**6, "sqrt").options["segments"] == 4
    assert solve(uniform_chain(10), 10**6, "sqrt").options["segments"] == 3


def test_uniform_picks_the_fastest_that_fits() -> None:
    """Without segments, uniform returns the least recomputation whose peak fits."""
    chain = uniform_chain(12, x=10)
    budgets_and_k = []
    for b in (400, 300, 200, 150):
        s = solve(chain, b, "uniform")
        budgets_and_k.append(s.options["segments"])
        assert s.predicted.peak_bytes <= b
    assert budgets_and_k[0] == 1  # store-all fits 400
    assert budgets_and_k == sorted(budgets_and_k)  # tighter budgets need more segments


@pytest.mark.parametrize("name", CHECKMATE)
def test_store_all_on_reference_graphs(checkmate_dir, name: str) -> None:
    """store_all on each Checkmate graph simulates valid; its peak lies between the largest single
    step and the sum of all outputs."""
    graph = load_problem(checkmate_dir / f"{name}.json")
    s = solve(graph, 10**15, "store_all")
    r = simulate(graph, s)
    assert r.valid
    assert r.peak_bytes == s.predicted.peak_bytes
    biggest_step = max(
        graph.out_bytes[v] + sum(graph.out_bytes[u] for u in graph.preds[v]) for v in graph.ops
    )
    assert biggest_step <= r.peak_bytes < sum(graph.out_bytes)
    raw = json.loads((checkmate_dir / f"{name}.json").read_text())
    assert r.compute_time == pytest.approx(
        sum(n.get("cost_cpu", n.get("duration", 0)) for n in raw["nodes"])
    )
