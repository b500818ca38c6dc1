"""`when_grads_done`: the gradient mark the profiler and the runtime share."""

from __future__ import annotations

import weakref

import torch

from checkpoint_solver.profiling.stages import when_grads_done


def test_called_once_per_backward_after_the_last_gradient() -> None:
    a = torch.randn(8, requires_grad=True)
    p, q = a * 2, a * 3
    arrived: list[str] = []
    p.register_hook(lambda g: arrived.append("p"))
    q.register_hook(lambda g: arrived.append("q"))
    calls: list[list[str]] = []
    when_grads_done([p, q], lambda: calls.append(list(arrived)))
    (p.sum() + q.sum()).backward(retain_graph=True)
    assert calls == [arrived] and len(arrived) == 2  # called after both, once
    (p.sum() * 0 + q.sum()).backward()  # a second backward: its own count
    assert len(calls) == 2 and len(calls[1]) == 4


def test_a_tensor_the_backward_does_not_reach_is_not_waited_for() -> None:
    a = torch.randn(8, requires_grad=True)
    p, q = a * 2, a * 3
    calls: list[int] = []
    when_grads_done([p, q], lambda: calls.append(1))
    p.sum().backward()  # q is not on the way to this loss
    assert calls == [1]


def test_holds_no_gradient_until_the_last_arrives() -> None:
    """torch's ``register_multi_grad_hook(mode="all")`` keeps the first gradient alive until the
    last one arrives (the profiler's marks and the runtime's held gradients the step frees);
    ours does not. Both are checked, so the test fails if the two behave alike."""

    def first_gradient_freed_at_the_mark(register: object) -> bool:
        a = torch.randn(256, requires_grad=True)
        q = a * 3  # made first: its backward runs last
        p = a * 2
        ref: dict[str, weakref.ref[torch.Tensor]] = {}

        def keep(g: torch.Tensor) -> None:
            ref["p"] = weakref.ref(g)

        p.register_hook(keep)
        freed: list[bool] = []
        register([p, q], lambda *_: freed.append(ref["p"]() is None))  # type: ignore[operator]
        (p.sum() + q.tanh().sum()).backward()
        assert len(freed) == 1
        return freed[0]

    assert first_gradient_freed_at_the_mark(when_grads_done)
    torch_all = lambda ts, fn: torch.autograd.graph.register_multi_grad_hook(ts, fn, mode="all")  # noqa: E731
    assert not first_gradient_freed_at_the_mark(torch_all)
