"""Op-level capture of one region (a whole model or one block) for graph schedules that replay.

`capture_region` traces the region's joint forward+backward ATen graph with `make_fx`: the inputs
are the parameters, buffers, the caller's tensor arguments and one *tangent* per differentiable
output (the gradient the rest of the step sends back); the outputs are the region's outputs and
the gradients of its parameters and of its inputs that require grad. The loss stays outside, as
with ``torch.autograd.Function``: the region is applied with `checkpoint_solver.apply` and the
caller's ``loss.backward()`` drives it. It is traced on the real tensors, so the model's code
runs as in eager; the values Python reads from tensors meanwhile are guards the replay checks
(`checkpoint_solver.profiling.guards`).

The traced graph is run once on the real inputs to learn which node created which tensor storage
(so views, ``_unsafe_view`` and in-place ops allocate nothing, exactly as the live-storage tracker
counts them) and timed node by node (median of `repeats` runs). Then it is **coarsened** into the
`Graph` problem the solvers see, with a map back to the traced nodes:

- a node that allocates nothing (a view, ``getitem``, ``detach``, an in-place op) joins the group
  of the node that made its storage: a view can never outlive its base, and an in-place op is
  recomputed together with the value it writes;
- a node that allocates nothing and reads only parameters (a weight's transpose) is inlined into
  every group that reads it: it is free to redo and needs no place in the problem.

Chains of cheap allocating ops (``a -> b`` with ``a`` read only by ``b``) are *not* folded: while
``b`` is computed ``a`` is still live, a transient the problem model (one size per node) cannot
express, and measured peaks then exceeded predictions at tight budgets by exactly ``a``'s bytes.
With these rules a node's size is exact and predicted peaks equal measured ones.

A group is computed as a unit (its nodes in traced order) and freed as a unit. Its size is the
bytes of the storages it makes that outlive it (read by another group or returned). A group
holding a random op (dropout's ``bernoulli_``) is marked ``replay_state``: it first runs in the
forward, in traced order, so it draws the same random numbers as eager autograd, and the executor
recomputes it under the RNG state it first ran with (the same mask again).

Around the groups the problem has: the sources (parameters and buffers as ``param``, tensor
inputs as ``input``, outside the budget); one node per tangent (computed when the backward
starts, needing every output live: the caller holds the outputs until its loss is
back-propagated); and a final ``sink`` needing the tangents and the input gradients, which the
backward hands back only when it returns. A tangent autograd hands to the backward is held by
autograd until the backward returns (an edge to the sink); one the loss does not reach is made
as zeros where the backward first reads it and freed after its last reader (`zero_tangents`:
when the region returns a scalar loss, the gradients of its other outputs, a language model's
logits beside its loss, which the caller's ``loss.backward()`` never sends). A scalar output (the
loss) is held by the caller through its backward: an edge to the sink too. Parameter gradients have 0 bytes, as parameters do:
they leave the step as ``.grad``, which the chain model and `measure_step` also leave out.
"""

from __future__ import annotations

import contextlib
import operator
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.func import functional_call
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from checkpoint_solver.errors import ProfilingError
from checkpoint_solver.problem import Graph, RngPolicy, Role
from checkpoint_solver.problem.blocks import backward_blocks
from checkpoint_solver.profiling.graph import (
    RANDOM_OPS,
    PhaseMarks,
    _nbytes,
    _op_name,
    _time_nodes,
)
from checkpoint_solver.profiling.guards import Guard, Recording, guard_nodes, user_line
from checkpoint_solver.profiling.snapshot import Snapshot
from checkpoint_solver.profiling.stages import StageCall, call_tree, stage_calls
from checkpoint_solver.profiling.tracker import (
    distinct_storage_nbytes,
    gradient_sums,
    storage_key,
    storage_nbytes,
)

__all__ = ["Region", "capture_region"]


@dataclass(frozen=True, eq=False)
class Region:
    """A captured region: the traced joint graph, the coarsened `Graph` problem and the map
    between them.

    Attributes
    ----------
    graph : Graph
        The problem to solve: sources, groups, tangents, sink (in this order of kinds; the node
        numbering is topological). ``graph.block`` gives each node's block when captured with
        blocks.
    gm : torch.fx.GraphModule
        The traced joint graph. Placeholders: parameters, buffers, tensor inputs, tangents.
    members : tuple[tuple[fx.Node, ...], ...]
        Per problem node, the traced nodes it runs (empty for sources, tangents and the sink).
    exposed : tuple[tuple[fx.Node, ...], ...]
        Per problem node, its members whose values outlive the group (read by another group or
        returned); the others are dropped as soon as the group has run.
    source_nodes : tuple[fx.Node, ...]
        The placeholder of each source problem node (same order as the sources in `graph`).
    tangents : tuple[int, ...]
        Problem node of each tangent, in the order of the differentiable outputs.
    tangent_nodes : tuple[fx.Node, ...]
        The traced placeholder of each tangent, in the same order.
    sink : int
        Problem node of the sink.
    outputs : tuple[fx.Node, ...]
        Traced nodes of the region's tensor outputs (flattened), in order.
    differentiable : tuple[bool, ...]
        Per output, whether it gets a tangent (floating point and requiring grad).
    zero_tangents : tuple[bool, ...]
        Per tangent, whether the graph assumes the caller sends none (an output beside a scalar
        loss): the executor makes it as zeros and frees it after its last reader. When a caller
        does send one, the gradients are still exact; the peak is then up to its bytes higher.
    param_grads : tuple[fx.Node | None, ...]
        Per parameter that requires grad, the traced node of its gradient (None when unused).
    input_grads : tuple[fx.Node | None, ...]
        Per tensor input, the traced node of its gradient (None when it needs none).
    param_names, buffer_names : tuple[str, ...]
    input_spec : Any
        The pytree spec of ``(args, kwargs)``; `leaves` holds the non-tensor leaves.
    output_spec : Any
        The pytree spec of the region's output.
    output_leaves : tuple[Any, ...]
        The output's leaves with tensors replaced by None (non-tensor outputs are constants).
    leaves : tuple[Any, ...]
        The flattened ``(args, kwargs)`` with tensors replaced by None (what the trace baked in).
    key : tuple
        What a call must match to reuse this capture (shapes, dtypes, devices, requires_grad,
        non-tensor values, training mode).
    input_bytes : int
        Bytes of the tensor inputs (what `measure_step` counts beside the graph's peak).
    buffer_writes : dict[int, tuple[fx.Node, ...]]
        Problem node -> the buffer placeholders its ops write (BatchNorm in training mode): the
        executor restores them after a recomputation, so they change once per step, as in eager.
    grad_bytes : tuple[int, ...]
        Per problem node, the parameter-gradient bytes that appear when it runs (left out of
        `graph`'s sizes; whole-step budgets count them, `checkpoint_solver.problem.states`).
    grad_windows : tuple[tuple[int, int, int], ...]
        For a parameter several groups contribute to: ``(first, last, bytes)``, the groups
        between which a second copy of its gradient is in flight (`ModelStates.windows`).
    guards : dict[fx.Node, Guard]
        The traced nodes that read a tensor value into Python (``if mask.all():``), with the
        value at capture: the executor checks each (`checkpoint_solver.profiling.guards`).
    """

    graph: Graph
    gm: fx.GraphModule
    members: tuple[tuple[fx.Node, ...], ...]
    exposed: tuple[tuple[fx.Node, ...], ...]
    source_nodes: tuple[fx.Node, ...]
    tangents: tuple[int, ...]
    tangent_nodes: tuple[fx.Node, ...]
    sink: int
    outputs: tuple[fx.Node, ...]
    differentiable: tuple[bool, ...]
    zero_tangents: tuple[bool, ...]
    param_grads: tuple[fx.Node | None, ...]
    input_grads: tuple[fx.Node | None, ...]
    param_names: tuple[str, ...]
    buffer_names: tuple[str, ...]
    input_spec: Any
    output_spec: Any
    output_leaves: tuple[Any, ...]
    leaves: tuple[Any, ...]
    key: tuple[Any, ...]
    input_bytes: int
    buffer_writes: dict[int, tuple[fx.Node, ...]] = field(default_factory=dict)
    grad_bytes: tuple[int, ...] = ()
    grad_windows: tuple[tuple[int, int, int], ...] = ()
    guards: dict[fx.Node, Guard] = field(default_factory=dict)


def call_key(module: nn.Module, leaves: Sequence[Any], spec: Any) -> tuple[Any, ...]:
    """What a call must match to reuse a capture."""
    parts: list[Any] = [str(spec), module.training]
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            parts.append(
                ("T", tuple(leaf.shape), str(leaf.dtype), str(leaf.device), leaf.requires_grad)
            )
        else:
            parts.append(("V", repr(leaf)))
    return tuple(parts)


class _Storages(fx.Interpreter):
    """Runs the graph keeping every value, recording per node the storages its output uses and
    those it created (a view, ``getitem`` or in-place op creates none)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.creator: dict[int, fx.Node] = {}  # storage key -> node that made it
        self.nbytes: dict[int, int] = {}
        self.made: dict[fx.Node, list[int]] = {}  # node -> storage keys it created
        self.uses: dict[fx.Node, list[int]] = {}  # node -> storage keys of its output

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.op != "output":
            tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            self.uses[n] = [storage_key(t) for t in tensors]
            self.made[n] = []
            for t, key in zip(tensors, self.uses[n], strict=True):
                if key not in self.creator:
                    self.creator[key] = n
                    self.nbytes[key] = storage_nbytes(t)
                    self.made[n].append(key)
        return out


@contextlib.contextmanager
def autocast_off() -> Iterator[None]:
    """torch.autocast disabled on the CPU and on CUDA: for running a graph `make_fx` traced under
    autocast (it holds the casts autocast made, so autocast must not cast again)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield


def capture_region(
    module: nn.Module,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    blocks: Sequence[nn.Module] = (),
    stages: Sequence[StageCall] | None = None,
    repeats: int = 3,
    name: str | None = None,
) -> Region:
    """Trace, analyse, time and coarsen `module`'s joint graph for these inputs.

    Parameters
    ----------
    blocks : sequence of nn.Module
        Sub-modules run in order by `module` (e.g. its transformer layers); each top-level call of
        one is a block (an RNN cell called T times is T blocks). Each problem node then records
        its block in ``graph.block`` (0 before the first block, ``k`` in block ``k`` (1-based),
        one more than the number of calls after the last; -1 for sources), which the
        hierarchical solver uses.
    stages : sequence of StageCall, optional
        The block calls themselves (what the profiler found, `checkpoint_solver.profiling.stages`);
        given, they replace `blocks`.
    repeats : int
        Timed runs per node (median; one warm-up run more). 0 skips timing (costs are 0), for a
        capture that only needs the structure (the executor's).

    Raises
    ------
    ProfilingError
        When tracing fails, the region writes to one of its inputs, an in-place op writes a value
        that is read elsewhere, or no output needs a gradient.
    """
    # Long: the capture's steps in order (trace, analyse, time, coarsen, check the replay), each
    # short, each handing its results to the next; the tracing closure keeps the hooks' state.
    kwargs = dict(kwargs or {})
    leaves, spec = tree_flatten((tuple(args), kwargs))
    tensor_pos = [i for i, v in enumerate(leaves) if isinstance(v, torch.Tensor)]
    inputs = [leaves[i] for i in tensor_pos]
    baked = tuple(None if isinstance(v, torch.Tensor) else v for v in leaves)
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in module.named_parameters() if not p.requires_grad}
    buffers = dict(module.named_buffers())
    diff_inputs = [k for k, t in enumerate(inputs) if t.requires_grad and t.is_floating_point()]

    snapshot = Snapshot.take(module)

    # functional_call does not always put back a parameter that several modules share (tied
    # weights, one cell in many step modules): after tracing it may be left a fake tensor.
    slots = [
        (owner, kind, key, value)
        for owner in module.modules()
        for kind in ("_parameters", "_buffers")
        for key, value in getattr(owner, kind).items()
    ]

    def restore() -> None:
        for owner, kind, key, value in slots:
            if getattr(owner, kind).get(key) is not value:
                getattr(owner, kind)[key] = value
        snapshot.restore()

    def call(p: dict[str, Any], b: dict[str, Any], xs: list[Any]) -> Any:
        flat = list(leaves)
        for k, i in enumerate(tensor_pos):
            flat[i] = xs[k]
        a, kw = tree_unflatten(flat, spec)
        return functional_call(module, {**p, **frozen, **b}, tuple(a), kw)

    # The outputs' shapes (for the tangents) from one forward on detached copies of the state.
    with torch.no_grad():
        example = call(
            {k: v.detach() for k, v in params.items()},
            {k: v.detach() for k, v in buffers.items()},
            [t.detach() for t in inputs],
        )
    restore()
    out_leaves, out_spec = tree_flatten(example)
    out_tensors = [t for t in out_leaves if isinstance(t, torch.Tensor)]
    if not out_tensors:
        raise ProfilingError(f"{type(module).__name__} returns no tensor; nothing to train")
    differentiable = tuple(t.is_floating_point() or t.is_complex() for t in out_tensors)
    tangents_in = [
        torch.zeros_like(t) for t, d in zip(out_tensors, differentiable, strict=True) if d
    ]
    # Beside a scalar loss, the caller back-propagates the loss: the other outputs get no
    # gradient (autograd passes None), so their tangents are zeros made where they are read.
    scalar = [t.dim() == 0 for t in tangents_in]
    zero_tangents = tuple(any(scalar) and not s for s in scalar)
    if not tangents_in:
        raise ProfilingError(
            f"{type(module).__name__} has no floating-point output; there is no gradient to "
            f"back-propagate through it"
        )

    calls: list[StageCall] = list(stages or ())
    if blocks and stages is None:
        # Every top-level call of a block is one (a cell called T times is T blocks).
        tree = call_tree(module, tuple(args), kwargs)
        restore()
        names = {id(m): n for n, m in module.named_modules()}
        calls = stage_calls(tree, [(names.get(id(m), type(m).__name__), m) for m in blocks])
    nb = len(calls)
    marks = PhaseMarks(calls)
    mark = marks.mark

    n_out = len(out_tensors)

    def joint(p: dict[str, Any], b: dict[str, Any], xs: list[Any], tg: list[Any]) -> Any:
        mark(0)
        out = call(p, b, xs)
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if len(outs) != n_out:
            raise ProfilingError("the region's outputs changed between two calls")
        mark(nb + 1)
        diff_out = [t for t, d in zip(outs, differentiable, strict=True) if d]
        wrt = [*p.values(), *(xs[k] for k in diff_inputs)]
        grads = torch.autograd.grad(diff_out, wrt, tg, allow_unused=True)
        return [*outs, *grads]

    def build(functional: bool) -> tuple[Any, ...]:
        # Long: the traced joint function and its tracing are one closure over the capture's state
        # (marks, hooks, the recording of Python reads).
        marks.marks.clear()
        handles = marks.install()
        try:
            try:
                # On the real tensors, so the model's code takes eager's path (see
                # `checkpoint_solver.profiling.guards`: the values Python reads are checked).
                with Recording() as reads:
                    gm = make_fx(joint, tracing_mode="real", _error_on_data_dependent_ops=False)(
                        params, buffers, list(inputs), tangents_in
                    )
                if functional:
                    with Recording() as reads:
                        gm = _functionalized(
                            gm, marks, (params, buffers, list(inputs), tangents_in)
                        )
                guards = guard_nodes(gm, reads.guards)
            except ProfilingError:
                raise
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                where = user_line(traceback.extract_tb(exc.__traceback__))
                raise ProfilingError(
                    f"tracing {type(module).__name__}'s joint graph failed{where} "
                    f"({type(exc).__name__}: {first}); op-level schedules need a region make_fx "
                    f"can trace (no data-dependent Python control flow); use a chain schedule"
                ) from exc
        finally:
            for h in handles:
                h.remove()
            restore()

        graph_nodes = list(gm.graph.nodes)
        placeholders = [n for n in graph_nodes if n.op == "placeholder"]
        n_p, n_b, n_x = len(params), len(buffers), len(inputs)
        p_nodes = placeholders[:n_p]
        b_nodes = placeholders[n_p : n_p + n_b]
        x_nodes = placeholders[n_p + n_b : n_p + n_b + n_x]
        t_nodes = placeholders[n_p + n_b + n_x :]
        (out_node,) = [n for n in graph_nodes if n.op == "output"]
        returned = list(tree_flatten(out_node.args)[0])
        outputs = tuple(returned[:n_out])
        grad_nodes = returned[n_out:]
        param_grads = tuple(grad_nodes[: len(params)])
        input_grads: list[fx.Node | None] = [None] * n_x
        for k, g in zip(diff_inputs, grad_nodes[len(params) :], strict=True):
            input_grads[k] = g
        for o in outputs:
            if not isinstance(o, fx.Node) or o.op != "call_function":
                raise ProfilingError(
                    f"{type(module).__name__} returns one of its inputs or parameters unchanged; "
                    f"op-level schedules need every output computed by the region"
                )

        # One real run keeping every value: who made which storage, and the sizes.
        detached = (
            {k: v.detach() for k, v in params.items()},
            {k: v.detach() for k, v in buffers.items()},
            [t.detach() for t in inputs],
            [torch.ones_like(t) for t in tangents_in],
        )
        try:
            # The trace holds autocast's casts: it runs as traced, with autocast off.
            with torch.no_grad(), autocast_off():
                analyser = _Storages(gm)
                analyser.run(*detached)
                del analyser.env
            with autocast_off():
                by_name = _time_nodes(gm, detached, repeats) if repeats > 0 else {}
        finally:
            restore()
        times = {n: by_name.get(n.name, 0.0) for n in gm.graph.nodes}
        coarse = _coarsen(
            module,
            gm,
            analyser,
            times,
            marks,
            placeholders=(p_nodes, b_nodes, x_nodes, t_nodes),
            outputs=outputs,
            param_grads=param_grads,
            input_grads=tuple(input_grads),
            zero_tangents=zero_tangents,
            held=tuple(o for o, t in zip(outputs, out_tensors, strict=True) if t.dim() == 0),
            name=name,
            n_blocks=nb,
        )
        traced = (p_nodes, b_nodes, x_nodes, t_nodes, outputs, param_grads, input_grads)
        return gm, coarse, guards, traced

    try:
        gm, coarse, guards, traced = build(False)
    except _InPlaceError:
        # In-place ops on values other ops read (T5's masked_fill_, GRU's gate arithmetic):
        # traced again functionalized, the graph computes them out of place (the same values).
        gm, coarse, guards, traced = build(True)
    p_nodes, b_nodes, x_nodes, t_nodes, outputs, param_grads, input_grads = traced
    return Region(
        graph=coarse.graph,
        gm=gm,
        members=coarse.members,
        exposed=coarse.exposed,
        source_nodes=tuple([*p_nodes, *b_nodes, *x_nodes]),
        tangents=coarse.tangents,
        tangent_nodes=tuple(t_nodes),
        sink=coarse.sink,
        buffer_writes=coarse.buffer_writes,
        grad_bytes=coarse.grad_bytes,
        grad_windows=coarse.grad_windows,
        outputs=outputs,
        differentiable=differentiable,
        zero_tangents=zero_tangents,
        param_grads=param_grads,
        input_grads=tuple(input_grads),
        param_names=tuple(params),
        buffer_names=tuple(buffers),
        input_spec=spec,
        output_spec=out_spec,
        output_leaves=tuple(None if isinstance(v, torch.Tensor) else v for v in out_leaves),
        leaves=baked,
        key=call_key(module, leaves, spec),
        input_bytes=distinct_storage_nbytes(inputs),
        guards=guards,
    )


def _functionalized(gm: fx.GraphModule, marks: PhaseMarks, example: Any) -> fx.GraphModule:
    """`gm` traced again through functionalization: in-place ops on intermediate values become
    their out-of-place versions (the same values), writes to inputs and buffers are kept. Each
    new node keeps the chain phase of the traced node it comes from."""
    nodes = list(gm.graph.nodes)
    phase = {n: marks.phase_of(i) for i, n in enumerate(nodes)}
    marks.marks.clear()

    class Relabel(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            marks.mark(phase[n])
            return super().run_node(n)

    def run(*args: Any) -> Any:
        return Relabel(gm).run(*args)

    # Traced on the real values (the caller restores buffers and RNG): the first trace's
    # constants stay real tensors.
    with torch.no_grad():
        real = tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, example)
    out: fx.GraphModule = make_fx(
        torch.func.functionalize(run, remove="mutations"),
        tracing_mode="real",
        _error_on_data_dependent_ops=False,
    )(*real)
    return out


class _InPlaceError(ProfilingError):
    """An in-place op on a value other ops read (retried functionalized)."""


# Batch-norm kernels that update ``running_mean``/``running_var`` (arguments 3 and 4) in training
# mode (argument 5) though their schemas do not mark them as written.
_UPDATES_RUNNING_STATS = frozenset({"native_batch_norm", "cudnn_batch_norm", "miopen_batch_norm"})


_SUMS = frozenset({"add", "add_"})


def _gradient_sums(
    ops: Sequence[fx.Node],
    param_grads: Sequence[fx.Node | None],
    position: dict[fx.Node, int],
    loss_at: int,
) -> set[fx.Node]:
    """The parameter gradients and the backward sums that make them, with their terms (each use's
    contribution to a shared weight's gradient): parameter-gradient memory, left out of the
    activation bytes as the live-storage tracker leaves them out of a plain step's
    (`checkpoint_solver.profiling.tracker.GradBuffers`)."""
    sums = _sum_terms(ops, position, loss_at)
    return gradient_sums((g for g in param_grads if g is not None), sums)


def _sum_terms(
    ops: Sequence[fx.Node], position: dict[fx.Node, int], loss_at: int
) -> dict[fx.Node, list[fx.Node]]:
    """The backward's sums, each with its terms."""
    return {
        n: [
            a
            for a in n.args
            if isinstance(a, fx.Node) and a.op == "call_function" and position[a] >= loss_at
        ]
        for n in ops
        if position[n] >= loss_at and _op_name(n.target) in _SUMS
    }


def _grad_bytes_by_node(
    size: int,
    ops: Sequence[fx.Node],
    param_grads: Sequence[fx.Node | None],
    position: dict[fx.Node, int],
    loss_at: int,
    of: dict[fx.Node, int],
) -> tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]:
    """Per problem node, the parameter-gradient bytes that appear when it runs: each
    parameter's at the first group that makes part of its gradient (a weight several uses share
    gets its sum buffer at the first use's backward), and for such a weight the window to its
    last sum in which a second copy is in flight (`ModelStates.windows`)."""
    sums = _sum_terms(ops, position, loss_at)
    out = [0] * size
    windows = []
    for g in param_grads:
        if g is None:
            continue
        groups = [of[m] for m in gradient_sums({g}, sums) if m in of]
        if groups:
            nbytes = _nbytes(g.meta.get("val"))
            out[min(groups)] += nbytes
            if max(groups) > min(groups):
                windows.append((min(groups), max(groups), nbytes))
    return tuple(out), tuple(windows)


def _block_of_nodes(
    size: int,
    n_src: int,
    edges: set[tuple[int, int]],
    backward: list[bool],
    forward_phases: list[int],
    tangent_ids: tuple[int, ...],
    sink: int,
    n_blocks: int,
    sizes: list[int],
) -> list[int]:
    """Each problem node's block: forward groups from the marks the block hooks left while
    tracing, backward groups from the data flow (`backward_blocks`)."""
    blocks = [-1] * n_src + [0] * (size - n_src)
    for k, phase in enumerate(forward_phases):
        blocks[n_src + k] = phase
    preds: list[list[int]] = [[] for _ in range(size)]
    for u, v in edges:
        preds[v].append(u)
    is_op = [v >= n_src for v in range(size)]
    return backward_blocks(blocks, preds, is_op, backward, tangent_ids, sink, n_blocks, sizes)


@dataclass(frozen=True, eq=False)
class _Coarse:
    graph: Graph
    members: tuple[tuple[fx.Node, ...], ...]
    exposed: tuple[tuple[fx.Node, ...], ...]
    tangents: tuple[int, ...]
    sink: int
    buffer_writes: dict[int, tuple[fx.Node, ...]]
    grad_bytes: tuple[int, ...]
    grad_windows: tuple[tuple[int, int, int], ...]


def _buffer_writes(
    module: nn.Module,
    ops: list[fx.Node],
    roots: Callable[[fx.Node], set[fx.Node]],
    source_set: set[fx.Node],
    buffer_set: set[fx.Node],
) -> dict[fx.Node, set[fx.Node]]:
    """The ops that write buffers, with the buffers each writes.

    Writes to buffers (BatchNorm's running statistics, its batch counter) happen once per step:
    a group that writes one is rerun with the buffers restored afterwards (`buffer_writes`), and
    one that does nothing else is computed exactly once. Writes to inputs are refused, and so
    are in-place writes to a value other ops also read."""
    writes: dict[fx.Node, set[fx.Node]] = {}
    for n in ops:
        schema = getattr(n.target, "_schema", None)
        written = []
        if schema is not None and schema.is_mutable:
            written = [
                a
                for a, arg in zip(n.args, schema.arguments, strict=False)
                if isinstance(a, fx.Node) and arg.alias_info is not None and arg.alias_info.is_write
            ]
        if _op_name(n.target) in _UPDATES_RUNNING_STATS and len(n.args) > 5 and n.args[5]:
            # These write the running statistics without saying so in their schema.
            written += [a for a in n.args[3:5] if isinstance(a, fx.Node)]
        if written:
            for a in written:
                targets = (roots(a) | {a}) & source_set
                if targets - buffer_set:
                    raise ProfilingError(
                        f"{type(module).__name__} writes to one of its inputs in the forward "
                        f"({n.target} at {n.name}); op-level schedules cannot replay that; use a "
                        f"chain schedule"
                    )
                if targets:
                    writes.setdefault(n, set()).update(targets)
                    continue
                if len(a.users) != 1:
                    raise _InPlaceError(
                        f"in-place op {n.target} ({n.name}) writes a value other ops also read; "
                        f"op-level schedules support in-place ops only on fresh values"
                    )
    return writes


def _coarsen(
    module: nn.Module,
    gm: fx.GraphModule,
    an: _Storages,
    times: dict[fx.Node, float],
    marks: PhaseMarks,
    *,
    placeholders: tuple[list[fx.Node], ...],
    outputs: tuple[fx.Node, ...],
    param_grads: tuple[fx.Node | None, ...],
    input_grads: tuple[fx.Node | None, ...],
    zero_tangents: tuple[bool, ...],
    held: tuple[fx.Node, ...],
    name: str | None,
    n_blocks: int,
) -> _Coarse:
    # Long: one pass that groups the joint graph's fx nodes into problem nodes and numbers them;
    # its steps share a dozen maps over the same nodes (groups, members, exposed values, gradient
    # windows), which helpers would pass back and forth.
    p_nodes, b_nodes, x_nodes, t_nodes = placeholders
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    ops = [n for n in nodes if n.op == "call_function"]
    sources = [*p_nodes, *b_nodes, *x_nodes]
    source_set = set(sources)
    tangent_set = set(t_nodes)
    root_of_key = an.creator
    loss_at = min((position[u] for t in t_nodes for u in t.users), default=len(nodes))
    # The first op reading a tangent starts the backward; every traced op after it is backward.

    def roots(n: fx.Node) -> set[fx.Node]:
        return {root_of_key[k] for k in an.uses.get(n, [])}

    writes = _buffer_writes(module, ops, roots, source_set, set(b_nodes))

    # Union-find over ops: a group is named by its first (head) node.
    group: dict[fx.Node, fx.Node] = {}

    def find(n: fx.Node) -> fx.Node:
        while group[n] is not n:
            group[n] = group[group[n]]
            n = group[n]
        return n

    def op_preds(n: fx.Node) -> list[fx.Node]:
        return [u for u in n.all_input_nodes if u.op == "call_function"]

    adopted: dict[fx.Node, set[int]] = {}  # a split-off output -> the storage it holds
    for n in ops:
        group[n] = n
        preds = op_preds(n)
        allocates = bool(an.made.get(n))
        reads_tangent = any(u in tangent_set for u in n.all_input_nodes)
        pred_groups = {find(u) for u in preds}
        if not allocates and roots(n) and len(pred_groups) > 1:
            # An in-place op reading other values (the gate sums of an LSTM cell, add_(a, b)):
            # its storage is its first input's, whose group it cannot join without reordering
            # the groups, and apart from it the problem would let that storage die early.
            # Functionalized (`_functionalized`), it computes out of place.
            owners = {u for u in preds if roots(n) <= roots(u) | {u}}
            if owners:
                raise _InPlaceError(
                    f"in-place op {n.target} ({n.name}) writes a value while reading others"
                )
        if reads_tangent or len(pred_groups) != 1:
            continue
        u = preds[0]
        if (
            n.target is operator.getitem
            and n.args[1] != 0
            and position[n] < loss_at
            and len(an.made.get(u, ())) > 1
            and set(an.uses.get(n, ())) <= set(an.made[u])
            and 2 * sum(an.nbytes[k] for k in an.uses[n]) <= max(an.nbytes[k] for k in an.made[u])
        ):
            # A small later output of a forward op that makes several (BatchNorm's and layer
            # norm's statistics beside their output, dropout's mask) is a group of its own
            # holding its storage, so the big output can die while the backward keeps this one.
            # Its bytes count twice while both groups are live: over, never under, and at most
            # half the big output (max-pooling's indices, larger than its output, stay with it).
            adopted[n] = set(an.uses[n])
            continue
        if not allocates and roots(n) and roots(n) <= roots(u) | {u}:
            group[n] = find(u)  # a view / in-place / getitem of its producer's storage
    heads: dict[fx.Node, list[fx.Node]] = {}
    for n in ops:
        heads.setdefault(find(n), []).append(n)
    special = set(outputs) | {g for g in (*param_grads, *input_grads) if g is not None}
    # Groups that allocate nothing and read only sources (a parameter's transpose) are inlined
    # into each group that reads them: free to redo, they need no place in the problem.
    for h, mem in list(heads.items()):
        mem_set = set(mem)
        if (
            not any(an.made.get(n) for n in mem)
            and all(u in source_set or u in mem_set for n in mem for u in n.all_input_nodes)
            and not any(n in special for n in mem)
            and not any(_op_name(n.target) in RANDOM_OPS for n in mem)
            and not any(n in writes for n in mem)
        ):
            readers = {find(u) for n in mem for u in n.users if u not in mem_set}
            if readers and all(r in heads for r in readers):
                del heads[h]
                for r in readers:
                    heads[r] = sorted({*heads[r], *mem}, key=position.__getitem__)
    ordered = sorted(heads, key=lambda h: position[h])
    n_fwd = sum(position[h] < loss_at for h in ordered)
    n_src, n_groups, n_t = len(sources), len(ordered), len(t_nodes)
    # Numbering: sources, forward groups, tangents, backward groups, sink (topological).
    gid = {h: n_src + i + (n_t if i >= n_fwd else 0) for i, h in enumerate(ordered)}
    of = {n: gid[h] for h, mem in heads.items() for n in mem}  # an inlined node: any reader
    tangent_ids = tuple(n_src + n_fwd + k for k in range(n_t))
    sink = n_src + n_groups + n_t
    size = sink + 1

    grad_nodes = _gradient_sums(ops, param_grads, position, loss_at)
    param_grad_keys = {k for g in grad_nodes for k in an.uses.get(g, [])}
    src_index = {n: i for i, n in enumerate(sources)}
    names: list[str] = [""] * size
    cost = [0.0] * size
    out_bytes = [0] * size
    backward = [False] * size
    rng = [RngPolicy.NONE] * size
    role = [Role.OP] * size
    members: list[tuple[fx.Node, ...]] = [()] * size
    exposed_of: list[tuple[fx.Node, ...]] = [()] * size
    for i, n in enumerate(sources):
        names[i] = n.name
        out_bytes[i] = _nbytes(n.meta.get("val"))
        role[i] = Role.INPUT if n in x_nodes else Role.PARAM
    for k, (t, v) in enumerate(zip(t_nodes, tangent_ids, strict=True)):
        names[v] = f"tangent_{k}"
        out_bytes[v] = _nbytes(t.meta.get("val"))
        backward[v] = True
        rng[v] = RngPolicy.FORBID_RECOMPUTE
    names[sink] = "sink"
    backward[sink] = True
    edges: set[tuple[int, int]] = set()
    buffer_writes: dict[int, tuple[fx.Node, ...]] = {}
    for h in ordered:
        i = gid[h]
        mem = heads[h]
        mem_set = set(mem)
        members[i] = tuple(mem)
        names[i] = h.name if len(mem) == 1 else f"{h.name}+{len(mem) - 1}"
        cost[i] = sum(times.get(n, 0.0) for n in mem)
        backward[i] = position[h] >= loss_at
        if any(_op_name(n.target) in RANDOM_OPS for n in mem):
            rng[i] = RngPolicy.REPLAY_STATE
        bufs = {b for n in mem for b in writes.get(n, ())}
        if bufs:
            buffer_writes[i] = tuple(sorted(bufs, key=position.__getitem__))
            if not any(an.made.get(n) for n in mem):
                # Only a write (a batch counter's add_): computed once, and always (the sink
                # waits for it, so no schedule leaves it out).
                rng[i] = RngPolicy.FORBID_RECOMPUTE
                edges.add((i, sink))
        exposed = [n for n in mem if n in special or any(of.get(u, -1) != i for u in n.users)]
        exposed_of[i] = tuple(exposed)
        keep = {k for n in exposed for k in an.uses.get(n, [])}
        owned = {k for n in mem for k in (*an.made.get(n, ()), *adopted.get(n, ()))}
        out_bytes[i] = sum(an.nbytes[k] for k in owned & keep if k not in param_grad_keys)
        for n in mem:
            for u in n.all_input_nodes:
                if u in mem_set or u.op == "get_attr":  # a constant the trace holds
                    continue
                if u in source_set:
                    edges.add((src_index[u], i))
                elif u in tangent_set:
                    edges.add((tangent_ids[t_nodes.index(u)], i))
                else:
                    edges.add((of[u], i))
    for t, tid, zero in zip(t_nodes, tangent_ids, zero_tangents, strict=True):
        for og in {of[o] for o in outputs}:
            edges.add((og, tid))
        if not (zero and t.users):
            edges.add((tid, sink))  # autograd holds it until the backward returns
    for o in held:
        edges.add((of[o], sink))  # a scalar loss: the caller holds it through its backward
    for g in input_grads:
        if g is not None and g.op == "call_function":
            edges.add((of[g], sink))

    blocks: list[int] = []
    if n_blocks:
        blocks = _block_of_nodes(
            size,
            n_src,
            edges,
            backward,
            [marks.phase_of(position[h]) for h in ordered[:n_fwd]],
            tangent_ids,
            sink,
            n_blocks,
            out_bytes,
        )
    graph = Graph(
        names=tuple(names),
        cost=tuple(cost),
        out_bytes=tuple(out_bytes),
        is_backward=tuple(backward),
        rng=tuple(rng),
        role=tuple(role),
        edges=tuple(sorted(edges)),
        cost_unit="seconds",
        block=tuple(blocks),
        name=name or f"{type(module).__name__} region ({n_groups} groups of {len(ops)} ops)",
    )
    # Random ops must keep their traced order under the group numbering (checked, not assumed).
    random_nodes = [n for n in ops if _op_name(n.target) in RANDOM_OPS]
    if [(of[n], position[n]) for n in random_nodes] != sorted(
        (of[n], position[n]) for n in random_nodes
    ):
        raise ProfilingError("coarsening reordered random ops; please report this model")
    grad_bytes, windows = _grad_bytes_by_node(size, ops, param_grads, position, loss_at, of)
    return _Coarse(
        graph,
        tuple(members),
        tuple(exposed_of),
        tangent_ids,
        sink,
        buffer_writes,
        grad_bytes,
        windows,
    )
