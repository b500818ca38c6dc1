"""The op-level graph: one training step's joint forward+backward ATen graph as a `Graph`.

Captured with `make_fx` over ``functional_call`` plus ``torch.autograd.grad`` (symbolic shapes are
not needed: fake tensors give every node's shape without computing), then run node by node on the
real inputs to time each node (median of `repeats` runs; a monotonic clock on CPU, with a device
synchronisation around each node on GPU).

Nodes: the parameters and buffers (role ``param``) and the caller's inputs (role ``input``), then
every ATen op in execution order. Output bytes are the sizes of the tensors an op creates; an op
whose outputs alias its inputs (views, ``detach``, in-place ops, ``getitem``) creates none and has
0 bytes, the memory staying with the node that allocated it (a simplification: Checkmate's model
has no aliasing, so a view can outlive its base in a schedule). Forward nodes are those traced
before the loss; random ops (dropout's ``bernoulli_``, ``native_dropout``, ``rand*``) are marked
``forbid_recompute``. Each node also gets the chain stage it ran in, from the same block hooks the
chain profiler uses, so a stage's subgraph can be solved on its own.
"""

from __future__ import annotations

import operator
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.func import functional_call
from torch.fx.experimental.proxy_tensor import get_proxy_mode, make_fx
from torch.utils._pytree import tree_flatten

from checkpoint_solver.errors import ProfilingError
from checkpoint_solver.problem import Graph
from checkpoint_solver.profiling.stages import StageCall, StageHooks

__all__ = ["RANDOM_OPS", "PhaseMarks", "capture_graph"]

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


def _aliases(node: fx.Node) -> bool:
    """Whether every output of `node` aliases an input (so it allocates nothing)."""
    if node.target is operator.getitem:
        return True
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return False
    return bool(schema.returns) and all(r.alias_info is not None for r in schema.returns)


def _user_frame(exc: BaseException) -> str:
    """ " at FILE:LINE in FUNC: `code`" for the innermost frame outside torch and this package."""
    import traceback
    from pathlib import Path

    skip = (str(Path(torch.__file__).parent), str(Path(__file__).parents[1]))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(skip)]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" at {f.filename}:{f.lineno} in {f.name}:{code}"


def _nbytes(val: Any) -> int:
    total = 0
    for t in tree_flatten(val)[0]:
        if isinstance(t, torch.Tensor):
            total += t.numel() * t.element_size()
    return total


class PhaseMarks:
    """Which chain phase each traced node belongs to, from hooks on the blocks while `make_fx`
    traces: phase 0 before the first block, ``k`` in block ``k`` (1-based), ``len(blocks) + 1``
    after the last; in the backward, phase ``k`` once the gradients of block ``k``'s inputs are
    done (multi-grad hooks fire in the traced backward too).

    Marks are (nodes traced so far, phase from here on), in tracing order: positions never
    decrease, and a later mark at the same position wins.
    """

    def __init__(self, blocks: Sequence[StageCall]) -> None:
        self.blocks = list(blocks)
        self.marks: list[tuple[int, int]] = []
        nb = len(self.blocks)

        def pre(k: int, a: Any, kw: Any) -> None:
            self.mark(k + 1)
            self._on_grads(tree_flatten((a, kw))[0], k)

        def post(k: int, out: Any) -> None:
            if k == nb - 1:
                self.mark(nb + 1)
                self._on_grads(tree_flatten(out)[0], nb)

        def extra(name: str, index: int) -> None:
            raise ProfilingError(
                f"{name!r} was called {index + 1} times while tracing, more than its stages"
            )

        self.hooks = StageHooks(self.blocks, pre, post, extra)

    def mark(self, phase: int) -> None:
        mode = get_proxy_mode()
        if mode is not None:
            self.marks.append((len(mode.tracer.graph.nodes), phase))

    def _on_grads(self, ts: list[torch.Tensor], phase: int) -> None:
        ts = [t for t in ts if isinstance(t, torch.Tensor) and t.requires_grad]
        if ts:
            torch.autograd.graph.register_multi_grad_hook(
                ts, lambda grads: self.mark(phase), mode="all"
            )

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


def capture_graph(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    loss_fn: Callable[[Any], torch.Tensor],
    blocks: list[StageCall],
    *,
    repeats: int = 3,
) -> tuple[Graph, tuple[int, ...]]:
    """Trace and time the joint graph; return it with each node's chain phase index (0 prologue,
    ``k`` block k, ``len(blocks) + 1`` epilogue; parameters and inputs get -1)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())
    loss_at: list[int] = []
    nb = len(blocks)
    marks = PhaseMarks(blocks)
    mark = marks.mark

    def step(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], a: Any, kw: Any) -> Any:
        mark(0)
        out = functional_call(model, ({**p, **frozen, **b}), tuple(a), dict(kw))
        loss = loss_fn(out)
        mode = get_proxy_mode()
        if mode is not None:
            loss_at.append(len(mode.tracer.graph.nodes))
        mark(nb + 1)
        grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
        return [loss, *[g for g in grads if g is not None]]

    handles = marks.install()
    rng = torch.get_rng_state()
    saved_buffers = [t.detach().clone() for t in buffers.values()]
    try:
        try:
            gm = make_fx(step, tracing_mode="fake")(params, buffers, list(args), kwargs)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ProfilingError(
                f"capturing the op graph failed{_user_frame(exc)} ({type(exc).__name__}: "
                f"{first}); profile with graph=False to get the chain only"
            ) from exc
    finally:
        for h in handles:
            h.remove()
    nodes = [n for n in gm.graph.nodes if n.op in ("placeholder", "call_function")]
    times = _time_nodes(gm, (params, buffers, list(args), kwargs), repeats)
    with torch.no_grad():
        for t, v in zip(buffers.values(), saved_buffers, strict=True):
            t.copy_(v)
    torch.set_rng_state(rng)

    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    loss_index = loss_at[0] if loss_at else len(order)
    index = {n: i for i, n in enumerate(nodes)}
    n_params = len(params)
    n_buffers = len(buffers)
    names, cost, out_bytes, backward, rng_policy, role, stage = [], [], [], [], [], [], []
    edges = []
    placeholder = 0
    for node in nodes:
        i = index[node]
        names.append(node.name)
        if node.op == "placeholder":
            is_param = placeholder < n_params + n_buffers
            placeholder += 1
            role.append("param" if is_param else "input")
            cost.append(0.0)
            out_bytes.append(_nbytes(node.meta.get("val")))
            backward.append(False)
            rng_policy.append("none")
            stage.append(-1)
            continue
        role.append("op")
        cost.append(times.get(node.name, 0.0))
        out_bytes.append(0 if _aliases(node) else _nbytes(node.meta.get("val")))
        backward.append(order[node] >= loss_index)
        rng_policy.append("forbid_recompute" if _op_name(node.target) in RANDOM_OPS else "none")
        stage.append(marks.phase_of(order[node]))
        for u in node.all_input_nodes:
            if u in index:
                edges.append((index[u], i))
    graph = Graph(
        names=tuple(names),
        cost=tuple(cost),
        out_bytes=tuple(out_bytes),
        is_backward=tuple(backward),
        edges=tuple(edges),
        rng=tuple(rng_policy),
        role=tuple(role),
        cost_unit="seconds",
        name=f"{type(model).__name__} joint graph ({sum(r == 'op' for r in role)} ops)",
    )
    return graph, tuple(stage)


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
