"""Replay an op-level (graph) schedule on a region: a whole model or one block.

The region's joint graph is captured (`checkpoint_solver.profiling.capture_region`) at its first
training call, its problem's fingerprint checked against the schedule's, and the schedule compiled
into two programs split at the first tangent (the start of the backward):

- the **forward program** runs the schedule's ops before the split: each ``compute(v)`` runs the
  group's traced ATen ops in order (a recomputed group simply runs again), each ``free(v)`` drops
  the group's values. What is live at the split is handed to the backward (held detached, so the
  outputs do not keep themselves alive through their own graph);
- the **backward program** runs the rest: the tangents arrive as the incoming gradients, and the
  parameter and input gradients are returned when it ends.

The pair runs inside one ``torch.autograd.Function`` whose inputs are the region's tensor
arguments and parameters, so the caller's ``loss.backward()``, ``torch.autograd.grad`` and
gradient hooks see an ordinary autograd node. Random ops (dropout) first run in traced order, so
they draw what eager autograd draws; a group holding one saves the generators' states when it
first runs and is recomputed under them (``replay_state``), drawing the same mask again, as
``torch.utils.checkpoint`` does for a whole region. Parameter gradients are
laid out like their parameters before they are returned, so ``.grad`` takes them without a copy.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.node import map_arg
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_unflatten

from checkpoint_solver.errors import ApplyError, FingerprintMismatchError, ReplayError
from checkpoint_solver.problem import RngPolicy
from checkpoint_solver.problem.fingerprint import fingerprint
from checkpoint_solver.profiling.guards import check as check_guard
from checkpoint_solver.profiling.region import Region, autocast_off, call_key, capture_region
from checkpoint_solver.profiling.snapshot import RngState
from checkpoint_solver.profiling.tracker import storage_key
from checkpoint_solver.runtime import applied as applied_record
from checkpoint_solver.runtime.offload import Copier
from checkpoint_solver.schedule import Compute, Free, OffloadValue, PrefetchValue, Schedule

__all__ = ["GraphReplay", "apply_graph", "compile_schedule", "graph_trace", "remove_graph"]


# One step of a program: ("run", group) | ("free", group) | ("tangent", k) | ("untangent", k)
# (the schedule frees tangent k) | ("sink", -1) | ("offload", group) | ("prefetch", group)
_Step = tuple[str, int]


@dataclass(frozen=True, eq=False)
class GraphReplay:
    """A schedule compiled for one captured region."""

    region: Region
    schedule: Schedule
    forward: tuple[_Step, ...]
    backward: tuple[_Step, ...]
    drop_inside: tuple[tuple[tuple[fx.Node, ...], ...], ...]  # per group, per member
    param_grad_of: dict[fx.Node, int]  # gradient node -> parameter index
    forward_keep: frozenset[fx.Node]  # outputs: the forward returns them, whatever it frees
    backward_keep: frozenset[fx.Node]  # gradients: the backward returns them at its end
    tangent_meta: tuple[tuple[tuple[int, ...], torch.dtype, torch.device], ...] = ()
    warned: set[str] = field(default_factory=set)  # warnings given once per compiled schedule
    reads: tuple[frozenset[int], ...] = ()  # per group, the groups its members read


def compile_schedule(region: Region, schedule: Schedule) -> GraphReplay:
    """Check `schedule` against `region` and split it into the forward and backward programs.

    Raises
    ------
    FingerprintMismatchError
        The schedule was solved for another problem (another model, input shape or dtype).
    ApplyError
        A chain schedule, or a schedule that computes random ops in another order than traced.
    """
    if schedule.kind != "graph":
        raise ApplyError("compile_schedule takes a graph schedule; chain schedules use cs.apply")
    got = fingerprint(region.graph)
    if got != schedule.fingerprint:
        raise FingerprintMismatchError(
            f"the graph schedule was solved for problem {schedule.fingerprint[:12]} "
            f"({schedule.size} nodes) but this region's graph is {got[:12]} "
            f"({region.graph.size} nodes): another model, input shape, dtype or training mode; "
            f"capture this call with capture_region and solve its graph"
        )
    g = region.graph
    tangent_index = {t: k for k, t in enumerate(region.tangents)}
    steps: list[_Step] = []
    split = None
    random_order = []
    seen = set()
    for op in schedule.ops:
        if isinstance(op, Compute):
            v = op.node
            if v in tangent_index:
                if split is None:
                    split = len(steps)
                steps.append(("tangent", tangent_index[v]))
            elif v == region.sink:
                steps.append(("sink", v))
            else:
                steps.append(("run", v))
                # Random groups draw in order; a buffer's counter write ("forbid_recompute",
                # BatchNorm's num_batches_tracked) runs once wherever it runs.
                if g.rng[v] == RngPolicy.REPLAY_STATE and v not in seen:
                    random_order.append(v)
                seen.add(v)
        elif isinstance(op, Free):
            if op.node in tangent_index:
                steps.append(("untangent", tangent_index[op.node]))
            elif op.node != region.sink:
                steps.append(("free", op.node))
        elif isinstance(op, (OffloadValue, PrefetchValue)):  # a group's values, to host and back
            steps.append(("offload" if isinstance(op, OffloadValue) else "prefetch", op.node))
        else:
            raise ApplyError(f"{op} is not a graph op")
    if split is None:
        raise ApplyError("the schedule never starts the backward (no tangent is computed)")
    if random_order != sorted(random_order):
        raise ApplyError(
            "the schedule computes random ops (dropout) in another order than the model does, so "
            "their masks would differ from eager autograd's; solve with a frontier-ordered "
            "solver (ilp, ilp-rounding, greedy, hierarchical)"
        )
    grads = {n for n in (*region.param_grads, *region.input_grads) if n is not None}
    drop_inside = []
    for mem, exposed in zip(region.members, region.exposed, strict=True):
        # A member no other group reads is dropped right after its last reader in the group.
        mem_set, out_set = set(mem), set(exposed)
        last: dict[fx.Node, int] = {}
        for k, n in enumerate(mem):
            for u in n.all_input_nodes:
                if u in mem_set:
                    last[u] = k
        drops: list[list[fx.Node]] = [[] for _ in mem]
        for k, n in enumerate(mem):
            if n not in out_set:
                drops[last.get(n, k)].append(n)
        drop_inside.append(tuple(tuple(d) for d in drops))
    param_grad_of = {n: i for i, n in enumerate(region.param_grads) if n is not None}
    metas = [t.meta["val"] for t in region.tangent_nodes]
    return GraphReplay(
        tangent_meta=tuple((tuple(m.shape), m.dtype, m.device) for m in metas),
        region=region,
        schedule=schedule,
        forward=tuple(steps[:split]),
        backward=tuple(steps[split:]),
        drop_inside=tuple(drop_inside),
        forward_keep=frozenset(region.outputs),
        backward_keep=frozenset(grads),
        param_grad_of=param_grad_of,
        reads=_group_reads(region),
    )


def _group_reads(region: Region) -> tuple[frozenset[int], ...]:
    """Per group, the groups whose values its members read (a prefetch is waited for there)."""
    group_of = {n: k for k, mem in enumerate(region.members) for n in mem}
    return tuple(
        frozenset(group_of[u] for n in mem for u in n.all_input_nodes if u in group_of)
        for mem in region.members
    )


def _run(
    replay: GraphReplay,
    steps: Sequence[_Step],
    keep: frozenset[fx.Node],
    env: dict[fx.Node, Any],
    tangents: Sequence[torch.Tensor | None] = (),
    params: Sequence[torch.Tensor] = (),
    trace: list[str] | None = None,
    ran: set[int] | None = None,
    rng: _Generators | None = None,
    copies: _Copies | None = None,
) -> None:
    """Run `steps`. Under torch.autocast the captured graph already holds the casts autocast made
    (`make_fx` traces below it), so it runs with autocast off: the same kernels as eager.

    # NOTE [Buffers once per step]
    A group that writes buffers (BatchNorm's running statistics) writes them when it first runs;
    when the schedule recomputes it (`ran` holds the groups run so far this step), the buffers
    it writes are put back afterwards, so they change once per step, as in eager."""
    with autocast_off():
        _run_steps(
            replay,
            steps,
            keep,
            env,
            tangents,
            params,
            trace,
            set() if ran is None else ran,
            _Generators(()) if rng is None else rng,
            _Copies() if copies is None else copies,
        )


def _run_steps(
    replay: GraphReplay,
    steps: Sequence[_Step],
    keep: frozenset[fx.Node],
    env: dict[fx.Node, Any],
    tangents: Sequence[torch.Tensor | None],
    params: Sequence[torch.Tensor],
    trace: list[str] | None,
    ran: set[int],
    rng: _Generators,
    copies: _Copies,
) -> None:
    # Long: the interpreter of the programs' steps, one branch per kind, as `_Step` lists them.
    region = replay.region
    random = region.graph.rng
    for kind, v in steps:
        if kind == "run":
            for u in replay.reads[v] & copies.arriving.keys():
                copies.arriving.pop(u)()  # a prefetched input: wait for its copy
            mem = region.members[v]
            drops = replay.drop_inside[v]
            restore = []
            if v in region.buffer_writes:
                if v in ran:
                    restore = [(env[b], env[b].clone()) for b in region.buffer_writes[v]]
                ran.add(v)
            resume = None
            if random[v] == RngPolicy.REPLAY_STATE:
                if v in rng.saved:
                    resume = rng.get()  # a recomputation: draw what the first run drew
                    rng.saved[v].restore()
                else:
                    rng.saved[v] = rng.get()
            for k, n in enumerate(mem):
                # (In a function: no name here holds a value past the schedule's free of it.)
                env[n] = _member(replay, n, env, params)
                for d in drops[k]:
                    env.pop(d, None)
            with torch.no_grad():
                for buf, before in restore:
                    buf.copy_(before)
            if resume is not None:
                resume.restore()
            if trace is not None:
                trace.append(f"compute({v})")
        elif kind == "free":
            for waits in (copies.leaving, copies.arriving):
                if v in waits:
                    waits.pop(v)()  # its copy still reads (or writes) the device copy
            for n in region.exposed[v]:
                if n not in keep:
                    env.pop(n, None)
            if trace is not None:
                trace.append(f"free({v})")
        elif kind == "offload":
            values = {n: env[n] for n in region.exposed[v] if n in env}
            copies.host[v], copies.leaving[v] = copies.copier.copy_values(
                values, "d2h", resident=copies.resident
            )
            del values  # the schedule's free(v) drops the device copy, not this loop's name
            if trace is not None:
                trace.append(f"offload({v})")
        elif kind == "prefetch":
            host = copies.host.pop(v)
            back, wait = copies.copier.copy_values(host, "h2d", copies.device, copies.resident)
            copies.arriving[v] = _releasing(wait, host)
            env.update(back)
            del back, host, wait
            if trace is not None:
                trace.append(f"prefetch({v})")
        elif kind == "tangent":
            if tangents[v] is None:  # no gradient reached this output: zeros, as autograd's
                shape, dtype, device = replay.tangent_meta[v]
                env[region.tangent_nodes[v]] = torch.zeros(shape, dtype=dtype, device=device)
            else:
                env[region.tangent_nodes[v]] = tangents[v]
            if trace is not None:
                trace.append(f"compute({region.tangents[v]})")
        elif kind == "untangent":
            env.pop(region.tangent_nodes[v], None)
            if trace is not None:
                trace.append(f"free({region.tangents[v]})")
        elif trace is not None:
            trace.append(f"compute({v})")


def _releasing(wait: Callable[[], None], host: Any) -> Callable[[], None]:
    """`wait`, holding the host copy until it is called: as the simulator counts it, a
    prefetched value's host copy is released when the first op that reads it waits for it."""

    def done() -> None:
        wait()

    done.host = host  # type: ignore[attr-defined]
    return done


def _member(
    replay: GraphReplay, n: fx.Node, env: dict[fx.Node, Any], params: Sequence[torch.Tensor]
) -> Any:
    """Run one traced op of a group on the values in `env`."""
    args = map_arg(n.args, env.__getitem__)
    kwargs = map_arg(n.kwargs, env.__getitem__)
    value = n.target(*args, **kwargs)  # type: ignore[operator]
    guard = replay.region.guards.get(n)
    if guard is not None:
        check_guard(n, value, guard)
    p = replay.param_grad_of.get(n)
    if p is not None and isinstance(value, torch.Tensor):
        value = _like_param(value, params[p])
    return value


def _like_param(g: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """`g` with `p`'s strides, so ``AccumulateGrad`` adopts it instead of copying it later."""
    if g.shape == p.shape and g.stride() == p.stride() and g.storage_offset() == 0:
        return g
    out = torch.empty_strided(p.shape, p.stride(), dtype=g.dtype, device=g.device)
    out.copy_(g)
    return out


class _RegionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, state: _CallState, *flat: torch.Tensor) -> Any:
        replay = state.replay
        region = replay.region
        n_x = state.n_inputs
        inputs, params = flat[:n_x], flat[n_x:]
        env: dict[fx.Node, Any] = {}
        for node, value in zip(
            region.source_nodes, (*params, *state.buffers, *inputs), strict=True
        ):
            env[node] = value.detach()
        for node in region.gm.graph.nodes:
            if node.op == "get_attr":  # constants the trace holds
                env[node] = getattr(region.gm, node.target)
        state.copies.resident = frozenset(
            storage_key(t) for t in env.values() if isinstance(t, torch.Tensor)
        )
        _run(
            replay,
            replay.forward,
            replay.forward_keep,
            env,
            params=params,
            trace=state.trace,
            ran=state.ran,
            rng=state.rng,
            copies=state.copies,
        )
        outs = [env[o] for o in region.outputs]
        ctx.state = state
        ctx.stash = {n: (v.detach() if isinstance(v, torch.Tensor) else v) for n, v in env.items()}
        ctx.n_params = len(params)
        # An output no gradient reaches gets None, not zeros autograd would hold to the end: the
        # backward makes its zeros where the schedule computes the tangent.
        ctx.set_materialize_grads(False)
        for o, d in zip(outs, region.differentiable, strict=True):
            if not d:
                ctx.mark_non_differentiable(o)
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        env, ctx.stash = ctx.stash, None
        if env is None:
            raise ReplayError(
                "this op-level region was already back-propagated; a second backward through "
                "the same step (retain_graph=True) is not supported"
            )
        state: _CallState = ctx.state
        replay = state.replay
        region = replay.region
        tangents = [g for g, d in zip(grads, region.differentiable, strict=True) if d]
        zero = region.zero_tangents
        sent = [
            k for k, (g, z) in enumerate(zip(tangents, zero, strict=True)) if z and g is not None
        ]
        if sent and "tangent" not in replay.warned:
            replay.warned.add("tangent")
            warnings.warn(
                f"a gradient reached output(s) {sent} of {region.graph.name or 'the region'}, "
                f"which the graph took for outputs beside the loss that get none; the gradients "
                f"are exact, but autograd holds each such gradient through the backward, above "
                f"the schedule's predicted peak (return the loss alone, or only what you "
                f"back-propagate, from the region)",
                stacklevel=2,
            )
        params = [env[n] for n in region.source_nodes[: ctx.n_params]]
        _run(
            replay,
            replay.backward,
            replay.backward_keep,
            env,
            tangents=tangents,
            params=params,
            trace=state.trace,
            ran=state.ran,
            rng=state.rng,
            copies=state.copies,
        )
        for wait in (*state.copies.leaving.values(), *state.copies.arriving.values()):
            wait()
        state.copies = _Copies(state.copies.copier, state.copies.device)
        out_inputs = [None if g is None else env.get(g) for g in region.input_grads]
        out_params = [None if g is None else env.get(g) for g in region.param_grads]
        env.clear()
        ctx.state = None
        return (None, *out_inputs, *out_params)


@dataclass(eq=False)
class _Generators:
    """The RNG states random groups first ran under (CPU and the region's CUDA devices)."""

    devices: tuple[torch.device, ...]
    saved: dict[int, RngState] = field(default_factory=dict)

    def get(self) -> RngState:
        return RngState.take(self.devices)


@dataclass(eq=False)
class _Copies:
    """One step's copies to host memory: the host copies per group, and the waits of the copies
    in flight (an offload's, until the schedule frees the group; a prefetch's, until a group
    that reads it runs)."""

    copier: Copier = field(default_factory=lambda: Copier("cpu"))
    device: torch.device | None = None
    host: dict[int, dict[fx.Node, torch.Tensor]] = field(default_factory=dict)
    leaving: dict[int, Any] = field(default_factory=dict)
    arriving: dict[int, Any] = field(default_factory=dict)
    # Storages of the region's inputs, parameters, buffers and constants: never copied.
    resident: frozenset[int] = frozenset()


@dataclass(eq=False)
class _CallState:
    replay: GraphReplay
    buffers: list[torch.Tensor]
    n_inputs: int
    trace: list[str] | None
    ran: set[int] = field(default_factory=set)  # groups run this step (see _run)
    rng: _Generators = field(default_factory=lambda: _Generators(()))
    copies: _Copies = field(default_factory=_Copies)


@dataclass(eq=False)
class _Applied:
    record: bool
    replay: GraphReplay | None = None
    last_trace: list[str] | None = None
    capturing: bool = False
    copier: Copier | None = None  # its copy streams, made at the first step


def apply_graph(module: nn.Module, schedule: Schedule, *, record: bool = False) -> nn.Module:
    """Make `module` train under the graph `schedule`; returns `module`, changed in place.

    The region is captured at the first call with grad enabled (its fingerprint must match the
    schedule's: same module structure, input shapes and dtypes, training mode); later calls with
    the same input structure reuse it, and a training call with another input structure raises.
    Calls without grad (or with nothing that needs a gradient) run the module as before.

    Raises
    ------
    ApplyError
        Already applied.
    FingerprintMismatchError
        At the first training call, when the schedule was solved for another region.
    """
    applied_record.refuse_compiled(module)
    applied_record.check_free(module)
    original = module.forward
    applied = _Applied(record=record)

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        applied_record.refuse_compiling(self)
        leaves, spec = tree_flatten((tuple(args), dict(kwargs)))
        tensors = [x for x in leaves if isinstance(x, torch.Tensor)]
        named = dict(self.named_parameters())
        if (
            applied.capturing
            or not torch.is_grad_enabled()
            or not any(t.requires_grad for t in (*named.values(), *tensors))
        ):
            return original(*args, **kwargs)
        key = call_key(self, leaves, spec)
        if applied.replay is None or applied.replay.region.key != key:
            if applied.replay is not None:
                raise FingerprintMismatchError(
                    "this call's inputs differ from the ones the graph schedule was applied for "
                    "(shape, dtype, requires_grad, a non-tensor argument or training mode); an "
                    "op-level schedule fits one input shape: solve one per shape"
                )
            applied.capturing = True
            try:
                # Outside any dispatch mode of the caller's (a memory tracker, a FLOP counter):
                # the capture is not part of the step it starts.
                with _disable_current_modes():
                    region = capture_region(self, tuple(args), dict(kwargs), repeats=0)
            finally:
                applied.capturing = False
            applied.replay = compile_schedule(region, schedule)
        replay = applied.replay
        region = replay.region
        trace: list[str] | None = [] if applied.record else None
        applied.last_trace = trace
        named_buffers = dict(self.named_buffers())
        buffers = [named_buffers[n] for n in region.buffer_names]
        ps = [named[n] for n in region.param_names]
        devices = tuple(dict.fromkeys(t.device for t in (*tensors, *ps) if t.is_cuda))
        device = next((t.device for t in (*ps, *tensors)), torch.device("cpu"))
        if applied.copier is None:
            applied.copier = Copier(device.type)
        state = _CallState(
            replay,
            buffers,
            len(tensors),
            trace,
            rng=_Generators(devices),
            copies=_Copies(applied.copier, device),
        )
        outs = iter(_RegionFunction.apply(state, *tensors, *ps))
        flat = [next(outs) if leaf is None else leaf for leaf in region.output_leaves]
        return tree_unflatten(flat, region.output_spec)

    module.forward = types.MethodType(forward, module)

    def undo() -> None:
        del module.forward

    applied_record.attach(
        module,
        applied_record.Applied(
            "graph", applied, undo=undo, trace=lambda: applied.last_trace if record else None
        ),
    )
    return module


def remove_graph(module: nn.Module) -> bool:
    """Undo `apply_graph`; True when something was removed."""
    rec = applied_record.get(module)
    if rec is None or rec.kind != "graph":
        return False
    applied_record.detach(module)
    return True


def is_graph_applied(module: nn.Module) -> bool:
    rec = applied_record.get(module)
    return rec is not None and rec.kind == "graph"


def graph_trace(module: nn.Module) -> list[str] | None:
    """The ops (computes and frees) the last training call ran, with ``record=True``."""
    rec = applied_record.get(module)
    return None if rec is None or rec.kind != "graph" else rec.state.last_trace
