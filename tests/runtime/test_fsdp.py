"""An exported torch policy under FSDP2 (``fully_shard`` per block): two gloo processes on CPU
give the single-process gradients (each shard's plain-autograd gradient, averaged as FSDP2's
reduce-scatter averages), and recomputation all-gathers no parameters beyond what FSDP2 gathers
without checkpointing (the rerun runs inside the block's backward, whose parameters FSDP2 has
already gathered)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.distributed.fsdp")

import checkpoint_solver as cs  # noqa: E402
from checkpoint_solver.runtime.measure import train_step  # noqa: E402
from tests.runtime.ddp_worker import WORLD, build, shard  # noqa: E402
from tests.runtime.test_ddp import _free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, mode: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.runtime.fsdp_worker", str(tmp_path), _free_port(), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_fsdp2_two_processes_match_single_process(tmp_path: Path) -> None:
    model = build()
    prof = cs.profile(model, shard(0), warmup=1, repeats=1)
    sched = cs.solve(prof.graph, cs.min_budget(prof.graph, "hierarchical"), "hierarchical")
    prof.save(tmp_path / "profile.json")
    sched.save(tmp_path / "schedule.json")
    _run(tmp_path, "policy")
    _run(tmp_path, "plain")
    got = torch.load(tmp_path / "grads-policy.pt")
    per_rank = []
    for rank in range(WORLD):
        m = build()
        torch.manual_seed(1234 + rank)
        train_step(m, shard(rank))
        per_rank.append([p.grad for p in m.parameters()])
    for g, g0, g1 in zip(got, *per_rank, strict=True):
        torch.testing.assert_close(g, g0 / WORLD + g1 / WORLD, rtol=1e-6, atol=1e-7)
    # Sharded without checkpointing, the same step gives the same gradients.
    plain = torch.load(tmp_path / "grads-plain.pt")
    assert all(torch.equal(a, b) for a, b in zip(got, plain, strict=True))
    policy_gathers = json.loads((tmp_path / "gathers-policy.json").read_text())
    plain_gathers = json.loads((tmp_path / "gathers-plain.json").read_text())
    assert policy_gathers == plain_gathers > 0
