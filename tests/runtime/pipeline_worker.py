"""Run by tests/runtime/test_pipeline.py: a GPT split into two `torch.distributed.pipelining`
stages on two gloo processes, trained one 1F1B step over 4 microbatches, each stage under its own
exported policy (solved together by `solve_pipeline` for one device budget); each rank saves its
stage's gradients.

Usage: python -m tests.runtime.pipeline_worker WORKDIR PORT
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn import functional as F

import checkpoint_solver as cs
from checkpoint_solver import models
from checkpoint_solver.profiling import load_profile
from tests.runtime.ddp_worker import finish

MICROBATCHES = 4


class First(nn.Module):
    """Embeddings and the first half of the blocks."""

    def __init__(self, gpt: models.GPT, cut: int) -> None:
        super().__init__()
        self.tok, self.pos, self.drop = gpt.tok, gpt.pos, gpt.drop
        self.blocks = nn.ModuleList(gpt.blocks[:cut])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        return x


class Last(nn.Module):
    """The second half of the blocks and the head: the logits."""

    def __init__(self, gpt: models.GPT, cut: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(gpt.blocks[cut:])
        self.ln_f, self.head = gpt.ln_f, gpt.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def build() -> tuple[models.GPT, tuple[torch.Tensor, torch.Tensor]]:
    return models.gpt(layers=4, dim=32, heads=4, context=16, batch=8, vocab=64, dropout=0.0)


def stages() -> tuple[First, Last]:
    gpt, _ = build()
    return First(gpt, 2), Last(gpt, 2)


def run(rank: int, workdir: str, port: str) -> None:
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = port
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        module = stages()[rank]
        prof = load_profile(os.path.join(workdir, f"profile-{rank}.json"))
        sched = cs.load_schedule(os.path.join(workdir, f"schedule-{rank}.json"))
        example = torch.load(os.path.join(workdir, f"example-{rank}.pt"))
        policy = cs.export_policy(module, sched, prof, example)
        assert rank == 1 or any(b.checkpoint for b in policy.blocks)
        policy.apply(module)
        stage = PipelineStage(module, rank, 2, torch.device("cpu"))
        schedule = Schedule1F1B(stage, n_microbatches=MICROBATCHES, loss_fn=loss_fn)
        idx, targets = build()[1]
        if rank == 0:
            schedule.step(idx)
        else:
            losses: list[torch.Tensor] = []
            schedule.step(target=targets, losses=losses)
        grads = [p.grad for p in module.parameters()]
        torch.save(grads, os.path.join(workdir, f"grads-{rank}.pt"))
    finally:
        dist.destroy_process_group()
    finish()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1], sys.argv[2]), nprocs=2, join=True)
