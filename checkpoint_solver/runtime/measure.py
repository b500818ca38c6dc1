"""Measure one training step as the profiler counts it: activation peak and time.

`measure_step` runs ``loss_fn(model(*inputs)).backward()`` once under the live-storage tracker
(`checkpoint_solver.profiling._tracker`) and reports the peak of storages created by ops during the
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

from checkpoint_solver.profiling._tracker import (
    GradBuffers,
    StorageTracker,
    distinct_storage_nbytes,
    storage_key,
)
from checkpoint_solver.profiling.chain import _Inputs, default_loss

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
    """

    peak_bytes: int
    loss: torch.Tensor
    cuda_peak_bytes: int | None = None


def train_step(
    model: nn.Module, inputs: Any, loss_fn: Callable[[Any], torch.Tensor] | None = None
) -> torch.Tensor:
    """``loss_fn(model(*inputs)).backward()``; returns the loss, detached. Inputs as for
    `checkpoint_solver.profiling.profile` (a tensor, a tuple of arguments, or a dict)."""
    inp = _Inputs.of(inputs)
    loss = (loss_fn or default_loss)(model(*inp.args, **inp.kwargs))
    loss.backward()
    return loss.detach()


def measure_step(
    model: nn.Module, inputs: Any, loss_fn: Callable[[Any], torch.Tensor] | None = None
) -> StepMeasure:
    """Run one training step under the storage tracker (gradients accumulate as usual)."""
    inp = _Inputs.of(inputs)
    tensors = inp.tensors()
    x0 = distinct_storage_nbytes(tensors)
    tracker = StorageTracker(
        ignore={storage_key(t) for t in (*model.parameters(), *model.buffers(), *tensors)}
    )
    tracker.set_phase(("B", 0))  # one phase: the whole step
    cuda = any(p.is_cuda for p in model.parameters())
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    with GradBuffers(model.parameters()) as buffers:
        buffers.tracker = tracker
        with tracker:
            loss = train_step(model, inputs, loss_fn)
    grads = buffers.excluded(model.parameters())
    _, peak = tracker.curve(exclude=grads)
    tracker.active = False
    cuda_peak = None
    if cuda:
        torch.cuda.synchronize()
        cuda_peak = int(torch.cuda.max_memory_allocated() - before)
    return StepMeasure(int(peak) + x0, loss, cuda_peak)


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
