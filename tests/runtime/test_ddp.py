"""The executor inside DistributedDataParallel: two gloo processes on CPU give the gradients of
the single-process run (each shard's plain-autograd gradient, averaged as DDP averages)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import checkpoint_solver as cs  # noqa: E402
from tests.runtime.ddp_worker import WORLD, build, shard, single_process_grads  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run_worker(module: str, *args: str) -> None:
    """Run ``python -m MODULE WORKDIR PORT [MORE...]`` from the repository root (`args`: the work
    folder, then anything more; a free port goes between them) and require a clean exit."""
    workdir, *rest = args
    proc = subprocess.run(
        [sys.executable, "-m", module, workdir, _free_port(), *rest],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    model = build()
    prof = cs.profile(model, shard(0), warmup=1, repeats=1, graph=False)
    sched = cs.solve(prof.chain, cs.min_budget(prof.chain, "dp"), "dp")
    assert any(str(op).startswith("F_n") for op in sched.ops)
    prof.save(tmp_path / "profile.json")
    sched.save(tmp_path / "schedule.json")
    run_worker("tests.runtime.ddp_worker", str(tmp_path))
    got = torch.load(tmp_path / "grads.pt")
    # DDP divides each rank's gradient by the world size, then sums them.
    for g, g0, g1 in zip(got, *single_process_grads(), strict=True):
        assert torch.equal(g, g0 / WORLD + g1 / WORLD)
