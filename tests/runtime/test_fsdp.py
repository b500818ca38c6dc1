"""An exported torch policy under FSDP2 (``fully_shard`` per block): two gloo processes on CPU
give the single-process gradients (each shard's plain-autograd gradient, averaged as FSDP2's
reduce-scatter averages), and recomputation all-gathers no parameters beyond what FSDP2 gathers
without checkpointing (the rerun runs inside the block's backward, whose parameters FSDP2 has
already gathered)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.fsdp")

import checkpoint_solver as cs  # noqa: E402
from tests.runtime.ddp_worker import WORLD, build, shard, single_process_grads  # noqa: E402
from tests.runtime.test_ddp import run_worker  # noqa: E402


def test_fsdp2_two_processes_match_single_process(tmp_path: Path) -> None:
    model = build()
    prof = cs.profile(model, shard(0), warmup=1, repeats=1)
    sched = cs.solve(prof.graph, cs.min_budget(prof.graph, "hierarchical"), "hierarchical")
    prof.save(tmp_path / "profile.json")
    sched.save(tmp_path / "schedule.json")
    for mode in ("policy", "plain"):
        run_worker("tests.runtime.fsdp_worker", str(tmp_path), mode)
    got = torch.load(tmp_path / "grads-policy.pt")
    for g, g0, g1 in zip(got, *single_process_grads(), strict=True):
        torch.testing.assert_close(g, g0 / WORLD + g1 / WORLD, rtol=1e-6, atol=1e-7)
    # Sharded without checkpointing, the same step gives the same gradients.
    plain = torch.load(tmp_path / "grads-plain.pt")
    assert all(torch.equal(a, b) for a, b in zip(got, plain, strict=True))
    policy_gathers = json.loads((tmp_path / "gathers-policy.json").read_text())
    plain_gathers = json.loads((tmp_path / "gathers-plain.json").read_text())
    assert policy_gathers == plain_gathers > 0
