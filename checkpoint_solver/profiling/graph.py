"""What the op-level capture (`checkpoint_solver.profiling.region`) shares: which ops are random,
which nodes allocate nothing, which chain phase each traced node ran in (`PhaseMarks`, from the same
stage hooks the chain profiler uses), the user's frame in a tracing error, and per-node timing.

Random ops (dropout's ``bernoulli_``, ``native_dropout``, ``rand*``, `RANDOM_OPS`) first run in
traced order, so they draw what eager autograd draws; the op-level executor recomputes them under
the RNG state they first ran with.
"""

from __future__ import annotations

import operator
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx
from torch.fx.experimental.proxy_tensor import get_proxy_mode
from torch.utils._pytree import tree_flatten

from checkpoint_solver.errors import ProfilingError
from checkpoint_solver.profiling.stages import StageCall, StageHooks

__all__ = ["RANDOM_OPS", "PhaseMarks", "aliases"]

RANDOM_OPS = frozenset(
    {
        "bernoulli",
        "bernoulli_",
        "native_dropout",
        "rand",
        "rand_like",
        "randn",
        "randn_like",
        "randint",
        "randint_like",
        "normal",
        "normal_",
        "uniform_",
        "randperm",
        "multinomial",
    }
)


def _op_name(target: Any) -> str:
    name = getattr(target, "__name__", str(target))
    return name.split(".")[0]


def aliases(node: fx.Node) -> bool:
    """Whether every output of `node` aliases an input (so it allocates nothing)."""
    if node.target is operator.getitem:
        return True
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return False
    return bool(schema.returns) and all(r.alias_info is not None for r in schema.returns)


def _nbytes(val: Any) -> int:
    total = 0
    for t in tree_flatten(val)[0]:
        if isinstance(t, torch.Tensor):
            total += t.numel() * t.element_size()
    return total


class PhaseMarks:
    """Which chain phase each traced forward node belongs to, from hooks on the blocks while
    `make_fx` traces: phase 0 before the first block, ``k`` in block ``k`` (1-based),
    ``len(blocks) + 1`` after the last. (Backward nodes get theirs from the data flow:
    `checkpoint_solver.profiling.region`.)

    Marks are (nodes traced so far, phase from here on), in tracing order: positions never
    decrease, and a later mark at the same position wins.
    """

    def __init__(self, blocks: Sequence[StageCall]) -> None:
        self.blocks = list(blocks)
        self.marks: list[tuple[int, int]] = []
        nb = len(self.blocks)

        def pre(k: int, a: Any, kw: Any) -> None:
            self.mark(k + 1)

        def post(k: int, out: Any) -> None:
            if k == nb - 1:
                self.mark(nb + 1)

        def extra(name: str, index: int) -> None:
            raise ProfilingError(
                f"{name!r} was called {index + 1} times while tracing, more than its stages"
            )

        self.hooks = StageHooks(self.blocks, pre, post, extra)

    def mark(self, phase: int) -> None:
        mode = get_proxy_mode()
        if mode is not None:
            self.marks.append((len(mode.tracer.graph.nodes), phase))

    def install(self) -> list[Any]:
        """Hook the blocks; returns the handles to remove."""
        self.hooks.reset()
        return self.hooks.install()

    def phase_of(self, position: int) -> int:
        """The phase of the node traced at `position`."""
        phase = 0
        for at, ph in self.marks:
            if at <= position:
                phase = ph
        return phase


class _Timer(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, cuda: bool) -> None:
        super().__init__(gm)
        self.cuda = cuda
        self.times: dict[str, float] = {}

    def run_node(self, n: fx.Node) -> Any:
        if n.op != "call_function":
            return super().run_node(n)
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = super().run_node(n)
        if self.cuda:
            torch.cuda.synchronize()
        self.times[n.name] = time.perf_counter() - t0
        return out


def _time_nodes(gm: fx.GraphModule, inputs: tuple[Any, ...], repeats: int) -> dict[str, float]:
    cuda = any(
        isinstance(t, torch.Tensor) and t.device.type == "cuda" for t in tree_flatten(inputs)[0]
    )
    runs: dict[str, list[float]] = {}
    detached = [
        {k: v.detach() for k, v in inputs[0].items()},
        {k: v.detach() for k, v in inputs[1].items()},
        inputs[2],
        inputs[3],
    ]
    for _ in range(repeats + 1):  # the first run warms up
        timer = _Timer(gm, cuda)
        with torch.no_grad():
            timer.run(*detached)
        for k, v in timer.times.items():
            runs.setdefault(k, []).append(v)
    return {k: float(statistics.median(v[1:] if len(v) > 1 else v)) for k, v in runs.items()}
