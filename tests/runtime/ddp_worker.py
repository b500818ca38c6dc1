"""Run by tests/runtime/test_ddp.py: two gloo processes train one step of a scheduled GPT inside
DistributedDataParallel and rank 0 saves the averaged gradients.

Usage: python -m tests.runtime.ddp_worker WORKDIR PORT
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import checkpoint_solver as cs
from checkpoint_solver import models
from checkpoint_solver.profiling import load_profile

WORLD = 2


def shard(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    idx = torch.randint(0, 64, (2, 16), generator=g)
    return idx, torch.roll(idx, -1, dims=1)


def build() -> torch.nn.Module:
    return models.gpt(layers=4, dim=32, heads=4, context=16, batch=2, vocab=64)[0]


def run(rank: int, workdir: str, port: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = port
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        prof = load_profile(os.path.join(workdir, "profile.json"))
        sched = cs.load_schedule(os.path.join(workdir, "schedule.json"))
        model = cs.apply(build(), sched, prof, record=True)
        ddp = DistributedDataParallel(model)
        torch.manual_seed(1234 + rank)
        ddp(*shard(rank)).backward()
        from checkpoint_solver.runtime import last_trace

        assert last_trace(model) == [str(op) for op in sched.ops if not str(op).startswith("free")]
        if rank == 0:
            torch.save([p.grad for p in model.parameters()], os.path.join(workdir, "grads.pt"))
    finally:
        dist.destroy_process_group()
    finish()


def finish() -> None:
    """The step is done and checked: leave without the interpreter's teardown, where a joinable
    C++ thread (gloo's) sometimes aborts the process after both ranks have finished ("terminate
    called without an active exception", about one run in five under pytest on 2 cores)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def single_process_grads() -> list[list[torch.Tensor]]:
    """Per rank, the plain-autograd gradients of its shard on one process (seeded as the
    workers seed their ranks)."""
    from checkpoint_solver.runtime.measure import train_step

    per_rank = []
    for rank in range(WORLD):
        m = build()
        torch.manual_seed(1234 + rank)
        train_step(m, shard(rank))
        per_rank.append([p.grad for p in m.parameters()])
    return per_rank


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], sys.argv[2]), nprocs=WORLD, join=True)
