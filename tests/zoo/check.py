"""Train a zoo model under a schedule next to plain autograd and compare everything."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import checkpoint_solver as cs
from checkpoint_solver.runtime.measure import measure_step

STEPS = 2
LR = 0.05


def _sgd(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.sub_(LR * p.grad)
                p.grad = None


@dataclass
class Run:
    losses: list[torch.Tensor]
    grads: list[list[torch.Tensor | None]]
    buffers: list[list[torch.Tensor]]
    peak_bytes: int  # the last step's measured activation peak


def train(model: nn.Module, inputs: Any, steps: int = STEPS) -> Run:
    """`steps` SGD steps from seed 1234; loss, gradients and buffers after each."""
    torch.manual_seed(1234)
    run = Run([], [], [], 0)
    for _ in range(steps):
        got = measure_step(model, inputs)
        run.losses.append(got.loss)
        run.grads.append([None if p.grad is None else p.grad.clone() for p in model.parameters()])
        run.buffers.append([b.clone() for b in model.buffers()])
        run.peak_bytes = got.peak_bytes
        _sgd(model)
    return run


def reference(model: nn.Module, inputs: Any) -> Run:
    return train(copy.deepcopy(model), inputs)


def differences(ref: Run, got: Run) -> list[str]:
    """What differs between two runs (empty when bitwise equal)."""
    out = []
    for step in range(len(ref.losses)):
        if not torch.equal(ref.losses[step], got.losses[step]):
            out.append(f"step {step}: loss {ref.losses[step].item()} != {got.losses[step].item()}")
        for i, (a, b) in enumerate(zip(ref.grads[step], got.grads[step], strict=True)):
            if (a is None) != (b is None) or (a is not None and not torch.equal(a, b)):
                out.append(f"step {step}: gradient {i} differs")
        for i, (a, b) in enumerate(zip(ref.buffers[step], got.buffers[step], strict=True)):
            if not torch.equal(a, b):
                out.append(f"step {step}: buffer {i} differs")
    return out


def run_schedule(model: nn.Module, inputs: Any, prof: Any, sched: Any) -> Run:
    """`sched` applied to a copy of `model` (a chain schedule with its profile, or a graph
    schedule on its own), trained as `train` does."""
    m = copy.deepcopy(model)
    if prof is None:
        cs.apply(m, sched)
    else:
        cs.apply(m, sched, prof)
    return train(m, inputs)


def dp_budgets(chain: cs.Chain) -> list[int]:
    """dp's minimum, the middle, and near store-all."""
    low = cs.min_budget(chain, "dp")
    high = max(cs.min_budget(chain, "store_all"), low)
    return [low, (low + high) // 2, low + int(0.95 * (high - low))]
