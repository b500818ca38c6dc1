"""Replay one schedule per input-size bucket (`checkpoint_solver.buckets`).

The model is applied once, with the first bucket's schedule (`executor.apply`); a forward
pre-hook that runs before the executor's reads the size of each call from the inputs (one per
varying dimension), and when
the bucket changes hands the executor that bucket's plan, the values its reruns read (learnt by
the first step of each bucket, then kept) and the input size its promise was made for. The
stages, hooks and autograd graph are the same for every bucket: only the schedule changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from checkpoint_solver.buckets import Buckets
from checkpoint_solver.errors import ApplyError
from checkpoint_solver.profiling.inputs import Inputs
from checkpoint_solver.runtime import applied, executor
from checkpoint_solver.runtime.plan import ReplayPlan

__all__ = ["apply_buckets", "bucket_in_use"]


class _Switch:
    def __init__(self, ex: Any, buckets: Buckets) -> None:
        self.ex = ex
        self.buckets = buckets
        self.plans = [ReplayPlan.from_ops(s.ops, s.size) for s in buckets.schedules]
        self.needed: dict[int, Any] = {}
        self.current = 0

    def size_of(self, args: Any, kwargs: Any) -> int | tuple[int, ...]:
        """The call's size in each varying dimension (an int for one)."""
        leaves = Inputs(tuple(args), dict(kwargs or {})).tensors()
        point = []
        for d, axes in enumerate(self.buckets.groups):
            got = set()
            for pos, axis in axes:
                if pos >= len(leaves) or axis >= leaves[pos].dim():
                    raise ApplyError(
                        "the call's inputs do not have the profiled examples' tensors; call the "
                        "model as it was profiled"
                    )
                got.add(int(leaves[pos].shape[axis]))
            if len(got) != 1:
                where = "" if len(self.buckets.groups) == 1 else f" of dimension {d}"
                raise ApplyError(
                    f"the call's varying axes{where} take the sizes {sorted(got)}; the buckets "
                    f"read one size from them (the profiled examples had one)"
                )
            point.append(got.pop())
        return point[0] if len(point) == 1 else tuple(point)

    def pre(self, model: nn.Module, args: Any, kwargs: Any) -> None:
        import torch

        if not torch.is_grad_enabled() or executor._state() is not None:
            return
        k = self.buckets.bucket_of(self.size_of(args, kwargs))
        if k == self.current:
            return
        self.needed[self.current] = self.ex.needed
        self.current = k
        self.ex.plan = self.plans[k]
        self.ex.needed = self.needed.get(k)
        self.ex.input_bytes = self.buckets.chains[k].x[0]
        self.ex.warned_inputs = False


def apply_buckets(model: nn.Module, buckets: Buckets) -> nn.Module:
    """Apply `buckets` to `model` (hooked in place; `checkpoint_solver.runtime.remove` undoes
    it). Each training call runs the schedule of the bucket its size falls in; a size above the
    last bucket raises `ApplyError`."""
    profile = dataclasses.replace(buckets.profile, chain=buckets.chains[0])
    executor.apply(model, buckets.schedules[0], profile)
    record = applied.get(model)
    assert record is not None and record.kind == "chain"
    ex = record.state
    switch = _Switch(ex, buckets)
    ex.handles.append(model.register_forward_pre_hook(switch.pre, with_kwargs=True, prepend=True))
    ex.bucket_switch = switch
    return model


def bucket_in_use(model: nn.Module) -> int:
    """The bucket the last training call of `model` ran in (index into ``buckets.edges``)."""
    record = applied.get(model)
    switch = getattr(None if record is None else record.state, "bucket_switch", None)
    if switch is None:
        raise ApplyError(f"{type(model).__name__} has no buckets applied (apply_buckets)")
    return int(switch.current)
