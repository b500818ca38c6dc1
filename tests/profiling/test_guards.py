"""`checkpoint_solver.profiling.guards`: the values Python reads from tensors while a region is
traced on real tensors are recorded with the user's line and checked at replay; reads that leave
no node in the graph are refused."""

from __future__ import annotations

import math

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import checkpoint_solver as cs
from checkpoint_solver.profiling.guards import (
    Guard,
    Recording,
    UnguardedRead,
    check,
    guard_nodes,
)


def _branchy(x: torch.Tensor) -> torch.Tensor:
    if (x > 0).all():
        x = x * 2
    n = int(x.sum())  # a value used as a number
    return x - n


def _trace(x: torch.Tensor) -> tuple[torch.fx.GraphModule, list[Guard]]:
    with Recording() as reads:
        gm = make_fx(_branchy, tracing_mode="real", _error_on_data_dependent_ops=False)(x)
    return gm, reads.guards


def test_reads_are_recorded_in_graph_order_with_the_users_line() -> None:
    gm, guards = _trace(torch.ones(3))
    assert [g.value for g in guards] == [True, 6]
    assert "in _branchy: `if (x > 0).all():`" in guards[0].where
    assert "in _branchy: `n = int(x.sum())" in guards[1].where
    nodes = guard_nodes(gm, guards)
    assert [n.target for n in nodes] == [torch.ops.aten._local_scalar_dense.default] * 2
    assert [g.value for g in nodes.values()] == [True, 6]


def test_a_read_with_another_value_is_a_replay_error_naming_the_line() -> None:
    gm, guards = _trace(torch.ones(3))
    node, guard = next(iter(guard_nodes(gm, guards).items()))
    check(node, True, guard)  # the capture's value: fine
    with pytest.raises(cs.ReplayError, match=r"if \(x > 0\)\.all\(\):.*was True when .* is False"):
        check(node, False, guard)


def test_nan_read_twice_is_the_same_value() -> None:
    gm, guards = _trace(torch.ones(3))
    node = next(iter(guard_nodes(gm, guards)))
    check(node, math.nan, Guard(math.nan, ""))
    with pytest.raises(cs.ReplayError):
        check(node, 1.0, Guard(math.nan, ""))


@pytest.mark.parametrize(
    "read",
    [lambda x: x.tolist(), lambda x: x.numpy(), lambda x: x.detach().numpy()],
    ids=["tolist", "numpy", "detach-numpy"],
)
def test_reads_that_leave_no_node_are_refused(read) -> None:  # type: ignore[no-untyped-def]
    def f(x: torch.Tensor) -> torch.Tensor:
        values = read(x)
        return x * float(values[0])

    with pytest.raises(UnguardedRead, match="hands a tensor's values to Python"):
        with Recording():
            make_fx(f, tracing_mode="real", _error_on_data_dependent_ops=False)(torch.ones(3))


def test_a_graph_that_keeps_fewer_reads_than_were_made_is_refused() -> None:
    gm, guards = _trace(torch.ones(3))
    with pytest.raises(cs.ProfilingError, match="read 3 tensor values"):
        guard_nodes(gm, [*guards, Guard(1, "")])
