"""Per-stage schedules for `torch.distributed.pipelining`: one device budget, `solve_pipeline`
counts each stage's in-flight microbatches (1F1B: stage 0 of 2 holds 2, stage 1 holds 1), the
stages train under their exported policies on two gloo processes, and the gradients are those of
the unsplit model on the whole batch."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.pipelining")

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver.runtime.measure import train_step  # noqa: E402
from checkpoint_solver.solvers.pipeline import solve_pipeline  # noqa: E402
from tests.runtime.pipeline_worker import (  # noqa: E402
    MICROBATCHES,
    First,
    Last,
    build,
    loss_fn,
    stages,
)
from tests.runtime.test_ddp import run_worker  # noqa: E402


def test_two_stage_pipeline_matches_the_whole_model(tmp_path: Path) -> None:
    first, last = stages()
    idx, targets = build()[1]
    micro = idx.shape[0] // MICROBATCHES
    x0 = idx[:micro]
    with torch.no_grad():
        h0 = first(x0)
    h0.requires_grad_(True)
    t0 = targets[:micro]
    profiles = [
        cs.profile(first, (x0,), loss_fn=lambda out: out.float().square().mean()),
        cs.profile(last, (h0,), loss_fn=lambda out: loss_fn(out, t0)),
    ]
    graphs = [p.graph for p in profiles]
    assert all(g is not None for g in graphs)
    # A budget the first stage fits only with recomputation, holding two microbatches.
    stores = [cs.min_budget(g, "store_all") for g in graphs]
    plan = solve_pipeline(
        graphs, int(max(stores) * 1.5), microbatches=MICROBATCHES, solver="hierarchical"
    )
    assert [s.in_flight for s in plan.stages] == [2, 1]
    assert all(s.peak_bytes <= plan.budget_bytes for s in plan.stages)
    # Holding two microbatches, the first stage recomputes; the last keeps everything.
    assert plan.stages[0].schedule.predicted.compute_time > graphs[0].store_all_time
    assert plan.stages[1].schedule.predicted.compute_time == pytest.approx(graphs[1].store_all_time)
    for rank, (prof, s, example) in enumerate(zip(profiles, plan.stages, (x0, h0), strict=True)):
        prof.save(tmp_path / f"profile-{rank}.json")
        s.schedule.save(tmp_path / f"schedule-{rank}.json")
        torch.save((example.detach().requires_grad_(rank == 1),), tmp_path / f"example-{rank}.pt")
    run_worker("tests.runtime.pipeline_worker", str(tmp_path))
    got = [*torch.load(tmp_path / "grads-0.pt"), *torch.load(tmp_path / "grads-1.pt")]
    # The unsplit model on the whole batch: the mean loss over equal microbatches.
    whole, (idx, targets) = build()
    train_step(whole, (idx, targets))
    # The stages' parameters in their order: the first stage's, then the last's.
    ordered = [*First(whole, 2).parameters(), *Last(whole, 2).parameters()]
    assert len(ordered) == len(got)
    for g, p in zip(got, ordered, strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)
