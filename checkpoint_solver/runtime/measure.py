"""Measure one training step as the profiler counts it: activation peak and time.

`measure_step` runs ``loss_fn(model(*inputs)).backward()`` once under the live-storage tracker
(`checkpoint_solver.profiling.tracker`) and reports the peak of storages created by ops during the
step plus the inputs, leaving out parameters, buffers and parameter gradients: the quantity the
simulator predicts for a chain schedule (``x[0]`` included). On CUDA it also reports
``torch.cuda.max_memory_allocated`` above what was allocated before the step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from checkpoint_solver.profiling.chain import default_loss
from checkpoint_solver.profiling.inputs import Inputs
from checkpoint_solver.profiling.tracker import (
    GradBuffers,
    StorageTracker,
    distinct_storage_nbytes,
    optimizer_state_tensors,
    storage_key,
)

__all__ = ["StepMeasure", "measure_step", "time_steps", "train_step"]


@dataclass(frozen=True)
class StepMeasure:
    """One measured training step.

    Attributes
    ----------
    peak_bytes : int
        Activation peak: inputs plus storages created by the step's ops (activations, saved
        tensors, activation gradients, temporaries), not parameters, buffers or their gradients.
    loss : torch.Tensor
        The step's loss (detached).
    cuda_peak_bytes : int | None
        On CUDA, ``max_memory_allocated`` during the step minus what was allocated before it
        (parameter gradients included); None on CPU.
    step_peak_bytes : int | None
        With an optimizer: the whole step's peak, every live tensor counted (parameters,
        buffers, optimizer state, gradients, the inputs and what ops make), the optimizer step
        included: what a whole-step schedule's prediction promises.
    cuda_step_peak_bytes : int | None
        On CUDA, ``torch.cuda.max_memory_allocated`` during the step: everything allocated on
        the device, model states included (compare with a whole-step prediction).
    cuda_reserved_bytes : int | None
        On CUDA, ``torch.cuda.max_memory_reserved`` during the step: what the caching allocator
        held, fragmentation included (what `solve`'s ``headroom`` leaves room for).
    host_peak_bytes : int
        The most host memory an offload schedule's copies held at once (on CPU, what the
        executor made under `checkpoint_solver.profiling.tracker.host_memory`); 0 without.
    """

    peak_bytes: int
    loss: torch.Tensor
    cuda_peak_bytes: int | None = None
    step_peak_bytes: int | None = None
    cuda_step_peak_bytes: int | None = None
    cuda_reserved_bytes: int | None = None
    host_peak_bytes: int = 0


def train_step(
    model: nn.Module, inputs: Any, loss_fn: Callable[[Any], torch.Tensor] | None = None
) -> torch.Tensor:
    """``loss_fn(model(*inputs)).backward()``; returns the loss, detached. Inputs as for
    `checkpoint_solver.profiling.profile` (a tensor, a tuple of arguments, or a dict)."""
    inp = Inputs.of(inputs)
    loss = (loss_fn or default_loss)(model(*inp.args, **inp.kwargs))
    loss.backward()
    return loss.detach()


def measure_step(
    model: nn.Module,
    inputs: Any,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    accumulate: bool = False,
) -> StepMeasure:
    """Run one training step under the storage tracker (gradients accumulate as usual).

    With `optimizer`, the step is the whole one: the gradients are cleared first (unless
    `accumulate`), ``optimizer.step()`` runs after the backward, and `step_peak_bytes` counts
    every live tensor. Measure a step after the first, so the optimizer's state exists."""
    inp = Inputs.of(inputs)
    tensors = inp.tensors()
    x0 = distinct_storage_nbytes(tensors)
    if optimizer is not None and not accumulate:
        for p in model.parameters():
            p.grad = None
    held = [*model.parameters(), *model.buffers()]
    if optimizer is not None:
        held += optimizer_state_tensors(optimizer)
        held += [p.grad for p in model.parameters() if p.grad is not None]
    fixed = distinct_storage_nbytes(held)
    tracker = StorageTracker(ignore={storage_key(t) for t in (*held, *tensors)})
    tracker.set_phase(("B", 0))  # one phase: forward and backward
    cuda = any(p.is_cuda for p in model.parameters())
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with GradBuffers(model.parameters()) as buffers:
        buffers.tracker = tracker
        with tracker:
            loss = train_step(model, inputs, loss_fn)
            if optimizer is not None:
                tracker.set_phase(("S", 0))  # the optimizer step
                optimizer.step()
    grads = buffers.excluded(model.parameters())
    stats, _ = tracker.curve(exclude=grads)
    peak = stats[("B", 0)].peak
    step_peak = None
    if optimizer is not None:
        step_peak = tracker.curve(exclude=set())[1] + x0 + fixed
    tracker.active = False
    cuda_peak = cuda_step = cuda_reserved = None
    if cuda:
        torch.cuda.synchronize()
        cuda_step = int(torch.cuda.max_memory_allocated())
        cuda_peak = cuda_step - int(before)
        cuda_reserved = int(torch.cuda.max_memory_reserved())
    return StepMeasure(
        int(peak) + x0, loss, cuda_peak, step_peak, cuda_step, cuda_reserved, tracker.host_peak
    )


def time_steps(
    model: nn.Module,
    inputs: Any,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    *,
    warmup: int = 1,
    repeats: int = 5,
) -> list[float]:
    """Wall-clock seconds of `repeats` training steps after `warmup` (gradients cleared each
    step; CUDA synchronised)."""
    cuda = any(p.is_cuda for p in model.parameters())
    out = []
    for i in range(warmup + repeats):
        for p in model.parameters():
            p.grad = None
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(model, inputs, loss_fn)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out
