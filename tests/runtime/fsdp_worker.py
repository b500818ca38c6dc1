"""Run by tests/runtime/test_fsdp.py: two gloo processes train one step of the built-in GPT
sharded with FSDP2 (``fully_shard`` per block, then the model, as torchtitan does) under an
exported torch policy; rank 0 saves the gradients (gathered) and both ranks' all-gather counts.

Usage: python -m tests.runtime.fsdp_worker WORKDIR PORT MODE   (MODE: policy or plain)
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import checkpoint_solver as cs
from checkpoint_solver.profiling import load_profile
from tests.runtime.ddp_worker import WORLD, build, finish, shard


def run(rank: int, workdir: str, port: str, mode: str) -> None:
    from torch.distributed.fsdp import fully_shard

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = port
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = build()
        if mode == "policy":
            prof = load_profile(os.path.join(workdir, "profile.json"))
            sched = cs.load_schedule(os.path.join(workdir, "schedule.json"))
            # Exported before sharding (the export traces the whole model once).
            policy = cs.export_policy(model, sched, prof, shard(0))
            assert any(b.checkpoint for b in policy.blocks)
            policy.apply(model)
        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        # FSDP2's all-gathers of a parameter group go through one function (private, so
        # counted where this torch has it).
        from torch.distributed.fsdp._fully_shard import _fsdp_param_group as group

        gathers = [0]
        original = group.foreach_all_gather

        def counted(*args: object, **kwargs: object) -> object:
            gathers[0] += 1
            return original(*args, **kwargs)

        group.foreach_all_gather = counted
        torch.manual_seed(1234 + rank)
        model(*shard(rank)).backward()
        group.foreach_all_gather = original
        grads = [p.grad.full_tensor() for p in model.parameters()]
        if rank == 0:
            torch.save(grads, os.path.join(workdir, f"grads-{mode}.pt"))
            with open(os.path.join(workdir, f"gathers-{mode}.json"), "w") as f:
                json.dump(gathers[0], f)
    finally:
        dist.destroy_process_group()
    finish()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], sys.argv[2], sys.argv[3]), nprocs=WORLD, join=True)
