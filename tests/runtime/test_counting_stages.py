"""The executor's cursor against schedules it never saw profiled: counting fake stages (the trick
pyrevolve tests its checkpointing with). Each stage logs its forward calls and its backward, so
the order in which a step runs them must be the schedule's own order, op for op, whatever the
solver and budget; the gradients must be plain autograd's, bit for bit.

The stages cost nothing to run, so many random schedules are replayed in a second: solver, chain
costs and budget drawn by hypothesis.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import checkpoint_solver as cs
from checkpoint_solver.problem.synthetic import random_chain
from checkpoint_solver.runtime.executor import apply
from checkpoint_solver.runtime.plan import ReplayPlan
from checkpoint_solver.schedule.ops import Bwd, FwdCheckpoint, FwdNoTape, FwdTape

Log = list[tuple[str, int]]


class _MarkBackward(torch.autograd.Function):
    """Identity whose backward logs ``("B", stage)``: the stage's backward has begun."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, stage: int, log: Log) -> torch.Tensor:
        ctx.stage, ctx.log = stage, log
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        ctx.log.append(("B", ctx.stage))
        return grad, None, None


class _Counting(nn.Module):
    """A stage that logs ``("F", stage)`` each time it runs and saves one tensor for backward."""

    def __init__(self, stage: int, log: Log) -> None:
        super().__init__()
        self.stage, self.log = stage, log
        self.w = nn.Parameter(torch.full((4,), 1.0 + stage / 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(("F", self.stage))
        return _MarkBackward.apply(torch.sin(x) * self.w, self.stage, self.log)


class _Model(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.log: Log = []
        self.blocks = nn.ModuleList(_Counting(s, self.log) for s in range(1, n + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x.sum()


def _expected(sched: cs.Schedule, n: int) -> Log:
    """The schedule's forwards and backwards of the block stages (stage n + 1 is the loss), in
    its order."""
    out: Log = []
    for op in sched.ops:
        if isinstance(op, (FwdNoTape, FwdCheckpoint, FwdTape)) and op.stage <= n:
            out.append(("F", op.stage))
        elif isinstance(op, Bwd) and op.stage <= n:
            out.append(("B", op.stage))
    return out


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    solver=st.sampled_from(["dp", "revolve", "sqrt", "uniform", "store_all"]),
    fraction=st.floats(0.0, 1.0),
)
def test_a_step_runs_the_schedules_ops_in_its_order(
    n: int, seed: int, solver: str, fraction: float
) -> None:
    chain = random_chain(n + 1, seed=seed, max_bytes=20)
    low, high = cs.min_budget(chain, solver), cs.min_budget(chain, "store_all")
    sched = cs.solve(chain, int(low + fraction * max(high - low, 0)), solver)
    model = _Model(n)
    plain = copy.deepcopy(model)
    x = torch.linspace(-1, 1, 4, requires_grad=True)
    plain(x).backward()
    want = [p.grad for p in plain.parameters()]
    want_x = x.grad
    x.grad = None
    apply(model, sched, blocks=list(model.blocks))
    # The first call probes (one forward without grad, every stage once) before its step,
    # unless the schedule never reruns a stage (then the executor stands aside).
    trivial = ReplayPlan.from_ops(list(sched.ops), n + 1).trivial
    probe: Log = [] if trivial else [("F", s) for s in range(1, n + 1)]
    for step in range(2):
        model.log.clear()
        for p in model.parameters():
            p.grad = None
        x.grad = None
        model(x).backward()
        want_log = (probe if step == 0 else []) + _expected(sched, n)
        assert model.log == want_log, (step, [str(op) for op in sched.ops])
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), want, strict=True))
        assert torch.equal(x.grad, want_x)


def test_the_log_sees_recomputation() -> None:
    """The check above can fail: a schedule that recomputes logs more forwards than stages, and a
    log of plain autograd is not that schedule's."""
    n = 6
    chain = random_chain(n + 1, seed=3, max_bytes=20)
    sched = cs.solve(chain, cs.min_budget(chain, "dp"), "dp")
    expected = _expected(sched, n)
    assert sum(kind == "F" for kind, _ in expected) > n
    model = _Model(n)
    model(torch.ones(4, requires_grad=True)).backward()
    assert model.log != expected
