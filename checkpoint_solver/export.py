"""Schedules as torch's own policies: ``torch.utils.checkpoint`` regions with selective policies.

`export_policy` turns a schedule (a graph schedule, ``hierarchical``'s, or a chain schedule,
expanded onto the profile's graph) into a `TorchPolicy`: per block call, checkpointed or not,
and inside a checkpointed block the ATen ops whose outputs are saved (``MUST_SAVE``) while the
others are recomputed (``PREFER_RECOMPUTE``). That is the nearest two-level schedule
(`checkpoint_solver.solvers.two_level`), simulated on the profile's graph: `TorchPolicy.predicted`
is its peak and time, `TorchPolicy.source` the schedule's own.

`TorchPolicy.apply` wraps each checkpointed block's forward in non-reentrant
``torch.utils.checkpoint`` with ``create_selective_checkpoint_contexts`` and nothing of ours runs
during the step, so the model trains as torch trains it: in eager, under ``torch.compile`` and
under FSDP2 or DDP.

How ops are named: the policy sees each ATen op of the block's forward once, in order; the
export lists the ops the profile's trace ran in that block (the same dispatch level, with
``detach`` and the ops torch's checkpoint ignores left out), and the k-th op of a name gets the
decision of the k-th op of that name there, as torch's own cache keys them. In eager the
sequences are the same. Under compile they differ a little (in-place ops functionalized, extra
``clone``s, dropout fused into ``native_dropout``): a name is compared without its overload and
in-place underscore, and an op with no counterpart is recomputed, unless it draws random numbers
(then saved: a recompiled graph need not replay its RNG state). `TorchPolicy.mismatches` counts
those ops per block call, summed over the calls that asked the policy (each eager step; under
compile, the traces).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils.checkpoint import (
    CheckpointPolicy,
    checkpoint,
    create_selective_checkpoint_contexts,
)

from checkpoint_solver.errors import ApplyError, FingerprintMismatchError
from checkpoint_solver.problem import Graph, RngPolicy, fingerprint
from checkpoint_solver.problem.profile import Profile, StageKind
from checkpoint_solver.profiling.graph import aliases
from checkpoint_solver.profiling.inputs import Inputs
from checkpoint_solver.profiling.region import Region, capture_region
from checkpoint_solver.profiling.stages import profile_calls
from checkpoint_solver.runtime import applied
from checkpoint_solver.schedule import Prediction, Schedule
from checkpoint_solver.schedule.ops import COPY_OP_TYPES
from checkpoint_solver.solvers.two_level import (
    TwoLevel,
    forward_of,
    nearest_two_level,
    own_tape,
    two_level,
)

__all__ = ["BlockPolicy", "TorchPolicy", "export_policy"]

_IGNORED = {str(op) for op in getattr(torch.utils.checkpoint, "SAC_IGNORED_OPS", ())} | {
    "aten.detach.default"
}
_RANDOM = ("bernoulli", "dropout", "rand", "randn", "randint", "normal", "uniform", "multinomial")


def _normal(name: str) -> str:
    """An op's name as compile and eager both spell it: no overload, no in-place underscore,
    ``_unsafe_view`` as ``view``."""
    base = name.split(".")[1] if name.startswith("aten.") else name
    base = base.rstrip("_")
    return "view" if base == "_unsafe_view" else base


@dataclass(frozen=True)
class BlockPolicy:
    """One block call's policy.

    Attributes
    ----------
    stage : int
        The profile's chain stage (0-based).
    module : str
        The block's dotted name; `call` its call (0-based) in a step.
    checkpoint : bool
        Whether the call runs inside ``torch.utils.checkpoint``.
    ops : tuple[str, ...]
        The ATen ops of its forward, in order, as the selective policy sees them.
    save : tuple[bool, ...]
        Per op: ``MUST_SAVE`` (True) or ``PREFER_RECOMPUTE``, in eager. A block that is not
        checkpointed saves what its own backward reads (its region exists under compile only).
    """

    stage: int
    module: str
    call: int
    checkpoint: bool
    ops: tuple[str, ...] = ()
    save: tuple[bool, ...] = ()


class _Matcher:
    """The selective policy of one block call: the k-th op of a name gets the decision of the
    k-th op of that name in the profiled trace (torch's own cache keys ops the same way)."""

    def __init__(self, block: BlockPolicy, misses: dict[str, int], key: str) -> None:
        self.block = block
        self.by_name: dict[str, list[bool]] = {}
        for op, save in zip(block.ops, block.save, strict=True):
            self.by_name.setdefault(_normal(op), []).append(save)
        self.misses = misses
        self.key = key
        self.seen: dict[tuple[bool, str], int] = {}

    def __call__(self, ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        name = str(op)
        if name in _IGNORED:
            return CheckpointPolicy.PREFER_RECOMPUTE
        # Old torch also asks during the recompute: counted apart.
        phase = bool(getattr(ctx, "is_recompute", False))
        base = _normal(name)
        k = self.seen.get((phase, base), 0)
        self.seen[(phase, base)] = k + 1
        flags = self.by_name.get(base, [])
        if k >= len(flags):
            if not phase:
                self.misses[self.key] = self.misses.get(self.key, 0) + 1
            if torch.compiler.is_compiling() and any(r in base for r in _RANDOM):
                return (
                    CheckpointPolicy.MUST_SAVE
                )  # eager's rerun replays the RNG; compile's may not
            return CheckpointPolicy.PREFER_RECOMPUTE
        return CheckpointPolicy.MUST_SAVE if flags[k] else CheckpointPolicy.PREFER_RECOMPUTE


def _contexts(block: BlockPolicy, misses: dict[str, int], key: str, module: nn.Module) -> Any:
    """A checkpoint call's selective contexts, with a fresh count of its ops (torch calls this
    once per region call, and compile once per trace). In eager the rerun puts the block's
    buffers back as it found them: BatchNorm's running statistics change once per step, not
    once more per rerun (pytorch#96136). Compile updates them once in its forward graph."""
    forward, rerun = create_selective_checkpoint_contexts(_Matcher(block, misses, key))  # type: ignore[no-untyped-call]
    buffers = list(module.buffers())
    if buffers and not torch.compiler.is_compiling():
        rerun = _KeepBuffers(rerun, buffers)
    return forward, rerun


class _KeepBuffers:
    """A rerun's context that restores `buffers` when the rerun ends (or stops early)."""

    def __init__(self, inner: Any, buffers: list[torch.Tensor]) -> None:
        self.inner = inner
        self.buffers = buffers
        self.saved: list[torch.Tensor] = []

    def __enter__(self) -> Any:
        self.saved = [b.detach().clone() for b in self.buffers]
        return self.inner.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        out = self.inner.__exit__(*exc)
        with torch.no_grad():
            for b, s in zip(self.buffers, self.saved, strict=True):
                b.copy_(s)
        self.saved = []
        return out


@dataclass(eq=False)
class TorchPolicy:
    """A schedule as torch checkpoint regions with selective policies (see the module docstring).

    Attributes
    ----------
    blocks : tuple[BlockPolicy, ...]
        One per block call of the profile, in order.
    two_level : TwoLevel
        The decisions and the graph schedule that runs them on the profile's graph.
    source : Prediction
        The exported schedule's own prediction (on the graph, for a chain schedule).
    compiled : TwoLevel
        The decisions as compile runs them (random ops saved), for `predicted_compiled`.
    input_bytes : int
        The tensor inputs' bytes, which graph predictions leave out (`peak_bytes` adds them).
    mismatches : dict[str, int]
        Per block call, the ops its policy met that the profile's trace did not have.
    """

    blocks: tuple[BlockPolicy, ...]
    two_level: TwoLevel
    source: Prediction
    compiled: TwoLevel
    input_bytes: int = 0
    mismatches: dict[str, int] = field(default_factory=dict)

    @property
    def peak_bytes(self) -> int:
        """The eager step's predicted activation peak with the inputs: what
        `checkpoint_solver.measure_step` measures (the graph's own peak leaves the inputs out)."""
        return self.predicted.peak_bytes + self.input_bytes

    @property
    def peak_bytes_compiled(self) -> int:
        """The same under ``torch.compile``."""
        return self.predicted_compiled.peak_bytes + self.input_bytes

    @property
    def predicted(self) -> Prediction:
        """The exported policy's peak and time in eager, as the simulator predicts them on the
        graph."""
        return self.two_level.schedule.predicted

    @property
    def predicted_compiled(self) -> Prediction:
        """The same under ``torch.compile``: a checkpointed block's random ops (dropout) are
        saved with the values they make, not recomputed (see the module docstring)."""
        return self.compiled.schedule.predicted

    @property
    def schedule(self) -> Schedule:
        """The graph schedule the policy runs (what `cs.simulate` checks)."""
        return self.two_level.schedule

    def describe(self) -> str:
        """One paragraph: which blocks are checkpointed, ops saved, and the cost against the
        source schedule (predicted)."""
        ck = [b for b in self.blocks if b.checkpoint]
        saved = sum(sum(b.save) for b in ck)
        total = sum(len(b.ops) for b in ck)
        p, s = self.predicted, self.source
        dt = (p.compute_time / s.compute_time - 1) * 100 if s.compute_time else 0.0
        dm = (p.peak_bytes / s.peak_bytes - 1) * 100 if s.peak_bytes else 0.0
        return (
            f"{len(ck)} of {len(self.blocks)} blocks checkpointed ({saved} of their {total} ops "
            f"saved); predicted peak {p.peak_bytes:,} B ({dm:+.1f} % against the schedule's "
            f"{s.peak_bytes:,}), time {dt:+.1f} % against the schedule's"
        )

    def apply(self, model: nn.Module) -> nn.Module:
        """Wrap the model's checkpointed block calls in torch checkpoint regions with their
        policies; returns `model`, changed in place (`checkpoint_solver.runtime.remove` undoes
        it). The step then runs torch's own code only: eager, compiled or sharded."""
        applied.check_free(model)
        by_module: dict[str, dict[int, BlockPolicy]] = {}
        for b in self.blocks:
            by_module.setdefault(b.module, {})[b.call] = b
        calls = {name: [0] for name in by_module}
        patched: list[nn.Module] = []
        for name, per_call in by_module.items():
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise ApplyError(
                    f"the policy's block {name!r} is not a submodule of {type(model).__name__}; "
                    f"apply it to the model it was exported for"
                ) from None
            module.forward = self._forward(module, per_call, calls[name], name)
            patched.append(module)

        def reset(*_: Any) -> None:
            for c in calls.values():
                c[0] = 0

        handle = model.register_forward_pre_hook(reset)

        def undo() -> None:
            handle.remove()
            for m in patched:
                del m.forward

        applied.attach(model, applied.Applied("policy", self, undo=undo))
        return model

    def _forward(
        self,
        module: nn.Module,
        per_call: dict[int, BlockPolicy],
        counter: list[int],
        name: str,
    ) -> Callable[..., Any]:
        misses = self.mismatches
        original = module.forward
        keys = {k: f"{name}#{k}" if k else name for k in per_call}

        def forward(*args: Any, **kwargs: Any) -> Any:
            k = counter[0]
            counter[0] = k + 1
            block = per_call.get(k)
            if block is None or not torch.is_grad_enabled():
                return original(*args, **kwargs)
            if not block.checkpoint and not torch.compiler.is_compiling():
                return original(*args, **kwargs)
            # Under compile a block that is not checkpointed is a region too, saving what eager
            # autograd saves: the partitioner's min-cut would otherwise choose for it. The
            # context is a partial of a module function: what torch.compile accepts.
            contexts = functools.partial(_contexts, block, misses, keys[k], module)
            return checkpoint(original, *args, use_reentrant=False, context_fn=contexts, **kwargs)

        return forward


def _forward_members(region: Region) -> Callable[[Sequence[int]], dict[fx.Node, int]]:
    """For problem nodes, their traced forward ops -> their node. A parameter-only op (a
    weight's transpose) is inlined into every group reading it, the backward's too: only the
    forward's part of the trace is the block's."""
    order = {n: i for i, n in enumerate(region.gm.graph.nodes)}
    backward_at = min((order[u] for t in region.tangent_nodes for u in t.users), default=len(order))

    def members(nodes: Sequence[int]) -> dict[fx.Node, int]:
        return {m: v for v in nodes for m in region.members[v] if order[m] < backward_at}

    return members


def _saved_ops(
    region: Region, owner: dict[fx.Node, int], save: frozenset[int], cannot: frozenset[int]
) -> tuple[frozenset[int], set[fx.Node]]:
    """The traced ops a block's policy saves for the problem nodes `save`, and the nodes that
    saves (`save` and more: torch saves whole ops).

    A saved value is its op's output, saved as the last op that writes it (dropout's mask is
    ``div_``'s, not ``empty_like``'s: torch refuses a cached tensor that was mutated). A saved
    view saves its base (else the rerun would make the base again to view it), and a saved
    output of an op with several saves them all (BatchNorm's statistics come with its output):
    the nodes those belong to are saved too. `owner`: the block's traced forward ops -> their
    problem node."""
    save = frozenset(save)
    while True:
        kept = {m for v in save for m in region.exposed[v] if m in owner and not _written_later(m)}
        todo = list(kept)
        while todo:
            n = todo.pop()
            if aliases(n):
                for u in n.all_input_nodes:
                    if u in owner and u not in kept and owner[u] not in cannot:
                        kept.add(u)
                        todo.append(u)
        more = {owner[n] for n in kept} - save - cannot
        if not more:
            return save, kept
        save |= more


def _block_ops(
    traced: list[fx.Node], owner: dict[fx.Node, int], kept: set[fx.Node]
) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """The ATen ops of a block's forward in traced order (`traced`: the joint graph's nodes;
    `owner`: the block's forward ops), as the selective policy sees them, and which it saves."""
    if not owner:
        return (), ()
    at = [i for i, n in enumerate(traced) if n in owner]
    ops: list[str] = []
    flags: list[bool] = []
    for n in traced[at[0] : at[-1] + 1]:
        if n.op != "call_function" or n.target is operator.getitem:
            continue
        name = str(n.target)
        if name in _IGNORED:
            continue
        ops.append(name)
        flags.append(n in kept)
    return tuple(ops), tuple(flags)


def _in_place(node: fx.Node) -> bool:
    """Whether `node` is an in-place op (it returns an input it writes)."""
    schema = getattr(node.target, "_schema", None)
    return schema is not None and any(
        r.alias_info is not None and r.alias_info.is_write for r in schema.returns
    )


def _written_later(node: fx.Node) -> bool:
    """Whether an op writes `node`'s value in place after it."""
    for user in node.users:
        schema = getattr(user.target, "_schema", None)
        if schema is None:
            continue
        for arg, value in zip(schema.arguments, user.args, strict=False):
            if value is node and arg.alias_info is not None and arg.alias_info.is_write:
                return True
    return False


def export_policy(
    model: nn.Module, schedule: Schedule, profile: Profile, example_inputs: Any
) -> TorchPolicy:
    """Export `schedule` (solved on ``profile.graph``, or on ``profile.chain``) as torch
    checkpoint regions with selective policies for `model` (the model profiled, called with
    `example_inputs` as when profiled: the op graph is traced again to name its ops).

    Raises
    ------
    ApplyError
        The profile has no op graph, names blocks the model does not have, or the schedule
        copies to host memory (torch's checkpoint regions cannot: apply it with ``cs.apply``).
    FingerprintMismatchError
        The schedule was solved for another problem, or the model traces to another graph.
    """
    from checkpoint_solver.solvers.hierarchical import chain_schedule_on_graph

    if schedule.link is not None and any(isinstance(op, COPY_OP_TYPES) for op in schedule.ops):
        raise ApplyError(
            "this schedule offloads to host memory, which torch.utils.checkpoint's policies "
            "cannot express; apply it with cs.apply(model, schedule, profile), or export a "
            "schedule solved without a link"
        )
    graph = profile.graph
    if graph is None:
        raise ApplyError(
            "exporting a policy needs the profile's op graph (profiled with graph=False, or "
            "tracing failed: see profile.measurement['graph_error'])"
        )
    scope = schedule.scope
    if schedule.kind == "chain":
        if schedule.fingerprint != fingerprint(profile.chain):
            raise FingerprintMismatchError(
                "the chain schedule was solved for another chain than this profile's"
            )
        on_graph = chain_schedule_on_graph(graph, schedule, scope=scope)
    else:
        if schedule.fingerprint != fingerprint(graph):
            raise FingerprintMismatchError(
                "the graph schedule was solved for another graph than this profile's"
            )
        on_graph = schedule
    blocks = [k for k, st in enumerate(profile.stages) if st.kind is StageKind.BLOCK]
    inp = Inputs.of(example_inputs)
    region = capture_region(
        model, inp.args, inp.kwargs, stages=profile_calls(model, profile.stages), repeats=0
    )
    if region.graph.names != graph.names:
        raise FingerprintMismatchError(
            f"{type(model).__name__} traces to another graph ({region.graph.size} nodes) than the "
            f"profile's ({graph.size}): export with the model and inputs that were profiled"
        )
    stages = profile.graph_stages
    # torch refuses a cached value an in-place op made (dropout's mask): such values rerun.
    inplace = frozenset(v for v in graph.ops if any(_in_place(m) for m in region.members[v]))
    nearest = nearest_two_level(graph, on_graph, stages, blocks, scope=scope, cannot_save=inplace)
    forward = forward_of(graph, stages)
    members = _forward_members(region)
    traced = list(region.gm.graph.nodes)
    out = []
    decisions = []
    for d in nearest.blocks:
        st = profile.stages[d.stage]
        nodes = forward.get(d.stage, [])
        # A block that is not checkpointed is a region under compile only: it saves its tape.
        wanted = d.save if d.checkpoint else frozenset(own_tape(graph, nodes, stages, d.stage))
        owner = members(nodes)
        save, kept = _saved_ops(region, owner, wanted, inplace)
        ops, flags = _block_ops(traced, owner, kept)
        out.append(BlockPolicy(d.stage, st.modules[0], st.call, d.checkpoint, ops, flags))
        decisions.append(dataclasses.replace(d, save=save) if d.checkpoint else d)
    two = two_level(graph, decisions, stages, scope=scope, budget=on_graph.budget_bytes)
    compiled = two_level(
        _compiled_graph(graph, region),
        [
            dataclasses.replace(d, save=d.save | _random_values(graph, forward.get(d.stage, [])))
            if d.checkpoint
            else d
            for d in decisions
        ],
        stages,
        scope=scope,
        budget=on_graph.budget_bytes,
    )
    return TorchPolicy(tuple(out), two, on_graph.predicted, compiled, region.input_bytes)


def _compiled_graph(graph: Graph, region: Region) -> Graph:
    """`graph` with dropout's masks as compile makes them: ``native_dropout``'s mask is a bool
    tensor (a byte per element), where eager's is in the activations' dtype."""
    sizes = list(graph.out_bytes)
    for v in graph.ops:
        if graph.rng[v] == RngPolicy.NONE or graph.is_backward[v]:
            continue
        vals = [n.meta.get("val") for n in region.exposed[v]]
        numel = sum(t.numel() for t in vals if isinstance(t, torch.Tensor))
        if numel:
            sizes[v] = min(sizes[v], numel)
    return dataclasses.replace(graph, out_bytes=tuple(sizes))


def _random_values(graph: Graph, nodes: Sequence[int]) -> frozenset[int]:
    """A block's random nodes and the values made from them, among its forward `nodes`: what
    compile saves (``native_dropout``'s output and mask) where eager replays the RNG."""
    random = {v for v in nodes if graph.rng[v] != RngPolicy.NONE}
    return frozenset(random | {v for v in nodes if any(u in random for u in graph.preds[v])})
