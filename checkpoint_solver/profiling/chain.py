"""Profile a torch model into a `Chain`: stages from the blocks the user names (or the model's
`nn.Sequential` children, or its longest run of repeated blocks), with measured time, activation
memory and FLOPs.

Stages. Stage boundaries are where the blocks start, plus where the last block ends: a *prologue*
stage holds what runs before the first block (embeddings; dropped when nothing runs there), one
stage per block (with any glue code up to the next block), and an *epilogue* stage holds what runs
after the last block, the loss included. Boundary ``a[k]`` is every tensor produced at or before
stage k and read by a later stage's forward (hidden state, residual, masks): its size is their
total, storages counted once. ``a[0]`` is the caller's inputs; ``a[L]`` is the loss.

What is counted. Only storages created by the model's ops during a training step in which the
caller keeps the loss and drops the rest of the output (``model(...).loss.backward()``): activations,
what autograd saves, activation gradients and temporaries. Parameters, buffers, parameter
gradients and the caller's inputs (except as ``x[0]``) are not activations and are left out,
here and in the measured peak it is compared with.

Per stage ``k``:
- ``xbar[k]``: the storages autograd saves during stage k's forward that stage k created, plus
  ``a[k]`` (the tape includes the output; saved inputs belong to ``a[k-1]``).
- ``of[k]``: the transient peak of the stage's taped forward above its start plus its tape
  ``xbar[k]``; ``ofn[k]``: the same for a forward without tape, above its output ``x[k]``
  (measured in a forward whose saved tensors are dropped, as ``F_n``/``F_ck`` run in the
  runtime); ``ob[k]``: the
  backward's peak above its start plus the gradient ``delta[k-1]`` it creates (the simulator's
  ``F_all`` and ``B`` rules, so the simulated store-all peak tracks the measured one).
- ``uf[k]``, ``ub[k]``: median over `repeats` timed steps (after `warmup` steps), between the
  block hooks (forward) and the gradient hooks on each boundary (backward); CUDA events on GPU, a
  monotonic clock on CPU.
- FLOPs forward and backward from `torch.utils.flop_counter` (information, not the cost model).

The model is left as found: parameter gradients, buffers (BatchNorm statistics) and RNG states are
restored after profiling.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from checkpoint_solver.errors import ProfilingError
from checkpoint_solver.problem import BoundaryValue, Chain, ModelStates, Role
from checkpoint_solver.problem.profile import Profile, StageInfo, StageKind
from checkpoint_solver.profiling.inputs import Inputs, model_device
from checkpoint_solver.profiling.snapshot import Snapshot
from checkpoint_solver.profiling.stages import (
    StageCall,
    StageHooks,
    call_tree,
    find_stages,
    resolve_blocks,
    stage_calls,
    when_grads_done,
)
from checkpoint_solver.profiling.tracker import (
    GradBuffers,
    PhaseStats,
    StorageTracker,
    distinct_storage_nbytes,
    optimizer_state_tensors,
    storage_key,
    storage_nbytes,
)

__all__ = ["default_loss", "inputs_to", "profile", "resolve_blocks"]

Phase = tuple[str, int]


def inputs_to(example_inputs: Any, device: Any) -> Any:
    """`example_inputs` (a tensor, a tuple/list of arguments or a dict) with every tensor in it
    moved to `device`; other values as they are."""
    return tree_map(lambda v: v.to(device) if isinstance(v, torch.Tensor) else v, example_inputs)


def default_loss(output: Any) -> torch.Tensor:
    """The loss used when none is given: a scalar output itself, else ``output.loss`` (Hugging Face
    outputs when labels are passed), else the first element of a tuple, summed to a scalar."""
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    elif isinstance(output, Mapping) and output:
        output = next(iter(output.values()))
    if not isinstance(output, torch.Tensor):
        raise ProfilingError(
            f"cannot make a loss from a model output of type {type(output).__name__}; pass "
            f"loss_fn=lambda out: ... returning a scalar tensor"
        )
    return output if output.dim() == 0 else output.float().sum()


def _check_devices(model: nn.Module, inputs: Inputs, device: Any) -> torch.device:
    dev = model_device(model)
    if device is not None and torch.device(device).type != dev.type:
        raise ProfilingError(
            f"the model is on {dev} but device={device!r} was asked; move it first with "
            f"model.to({str(device)!r}) (and the example inputs too)"
        )
    for i, t in enumerate(inputs.tensors()):
        if t.device.type != dev.type or (
            dev.index is not None and t.device.index not in (None, dev.index)
        ):
            raise ProfilingError(
                f"example input {i} is on {t.device} but the model is on {dev}; move the inputs "
                f"with .to({str(dev)!r})"
            )
    return dev


class _Clock:
    """Timestamps: CUDA events on a GPU, `time.perf_counter` otherwise."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())

    def durations(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(self.marks)]
        return [b - a for a, b in itertools.pairwise(self.marks)]


class _Stepper:
    """Runs training steps with phase callbacks at stage calls and boundary gradients."""

    def __init__(
        self,
        model: nn.Module,
        inputs: Inputs,
        blocks: list[StageCall],
        loss_fn: Callable[[Any], torch.Tensor],
    ) -> None:
        self.model, self.inputs, self.blocks, self.loss_fn = model, inputs, blocks, loss_fn
        self.on_phase: Callable[[Phase], None] = lambda phase: None
        self.ran: list[int] = []
        # Gradient hooks are registered as the forward goes, so the stepper holds no tensor
        # (holding each block's input to the end of the step would change when they are freed).
        self.grad_handles: list[Any] = []
        self.seen: set[int] = set()  # storages earlier blocks read
        self.tracker: StorageTracker | None = None  # set during the tracked step
        self.b_stage = len(blocks) + 2  # the backward phase running (the stage it reaches)
        self.hooks = StageHooks(blocks, self._pre, self._post, self._extra)

    def step(self, *, hooks: bool = True, backward: bool = True) -> torch.Tensor:
        nb = len(self.blocks)
        self.ran = []
        self.seen = set()
        self.grad_handles = []
        self.hooks.reset()
        with ExitStack() as stack:
            if hooks:
                for h in self.hooks.install():
                    stack.callback(h.remove)
                stack.callback(self._remove_grad_hooks)
                self.on_phase(("F", 0))
            out = self.model(*self.inputs.args, **self.inputs.kwargs)
            loss = self.loss_fn(out)
            # A training loop keeps the loss, not the output: what the output holds beyond the
            # loss (e.g. logits beside a fused loss) is freed unless autograd saved it.
            del out
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ProfilingError(
                    f"loss_fn must return a scalar tensor, got "
                    f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}"
                )
            if not loss.requires_grad:
                raise ProfilingError(
                    "the loss does not require grad: no parameter or input of the model reaches "
                    "it with grad enabled (is the model in torch.no_grad or are its parameters "
                    "frozen?)"
                )
            if not backward:
                self.on_phase(("done", 0))
                return loss.detach()
            if hooks:
                self._check_calls()
                self.b_stage = nb + 1
                self.on_phase(("B", nb + 1))
            loss.backward()
            if hooks:
                self.on_phase(("done", 0))
        return loss.detach()

    def _pre(self, k: int, args: Any, kwargs: Any) -> None:
        self.ran.append(k)
        inputs = [
            t
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and t.requires_grad
        ]
        # Gradients reaching block k's inputs end block k's backward. An input an earlier block
        # also reads (a time embedding every block reads, a skip's source) gets its whole
        # gradient only after that block's backward, so it marks nothing here unless it is all
        # the block reads.
        keys = [storage_key(t) for t in inputs]
        own = [
            t
            for t, key in zip(inputs, keys, strict=True)
            if key not in self.seen and not self._reused_by_maker(t)
        ]
        self.seen.update(keys)
        self._mark_when_grads(own or inputs, k)
        self.on_phase(("F", k + 1))

    def _post(self, k: int, output: Any) -> None:
        if k == len(self.blocks) - 1:
            outputs = [
                t
                for t in tree_flatten(output)[0]
                if isinstance(t, torch.Tensor) and t.requires_grad
            ]
            # Gradients reaching the last block's outputs end the epilogue's backward. An output
            # some block read is passed through (T5's blocks return the position bias they were
            # given): its gradient is whole only after its first reader's backward, so it marks
            # nothing unless it is all the block returns.
            own = [t for t in outputs if storage_key(t) not in self.seen]
            self._mark_when_grads(own or outputs, k + 1)
            self.on_phase(("F", k + 2))

    def _reused_by_maker(self, t: torch.Tensor) -> bool:
        """Whether the stage that made `t` also read it (T5's first block makes the position bias,
        uses it, and returns it to the next): its gradient is whole only after that stage's own
        backward, so it cannot mark the end of the reading block's. Known in the tracked step."""
        tracker = self.tracker
        if tracker is None:
            return False
        serial = tracker.serial(t)
        if serial is None:
            return False
        rec = tracker.records[serial]
        return rec.produced[0] == "F" and rec.produced[1] in rec.readers

    def _mark_when_grads(self, tensors: list[torch.Tensor], stage: int) -> None:
        if tensors and torch.is_grad_enabled():
            self.grad_handles.append(when_grads_done(tensors, self._grad_done(stage)))

    def _remove_grad_hooks(self) -> None:
        for h in self.grad_handles:
            h.remove()
        self.grad_handles = []

    def _extra(self, name: str, index: int) -> None:
        raise ProfilingError(
            f"{name!r} was called {index + 1} times in this forward but the chain has fewer stages "
            f"for it: the model's forward must make the same calls every step"
        )

    def _check_calls(self) -> None:
        if self.ran == list(range(len(self.blocks))):
            return
        missing = [self.blocks[k] for k in range(len(self.blocks)) if k not in self.ran]
        if missing:
            c = missing[0]
            raise ProfilingError(
                f"stage {_stage_name(c)!r} never ran in this forward; the model's "
                f"forward must make the same calls every step"
            )
        raise ProfilingError("the stages ran out of order (internal error)")

    def _grad_done(self, stage: int) -> Callable[[], None]:
        def hook() -> None:
            self._backward_phase(stage)

        return hook

    def _backward_phase(self, stage: int) -> None:
        # Backward phases only go down: a mark that comes after the stage's tape was read
        # (`tape_read`) marks nothing.
        if stage < self.b_stage:
            self.b_stage = stage
            self.on_phase(("B", stage))

    def tape_read(self, stage: int) -> None:
        """The backward reads a tensor stage `stage`'s forward saved. When that comes before the
        gradient mark that ends the next stage's backward (T5's decoder embedding: its backward
        reads the token ids while the encoder output's gradient is still being summed), the
        stage's backward starts here, as in the runtime, which reruns a dropped tape at its
        first read: the gradients live then are those the rerun runs beside."""
        if self.b_stage == stage + 1:
            self._backward_phase(stage)


def profile(
    model: nn.Module,
    example_inputs: Any,
    *,
    device: Any = None,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    blocks: Sequence[nn.Module | str] | str | None = None,
    warmup: int = 2,
    repeats: int = 5,
    graph: bool = True,
    optimizer: torch.optim.Optimizer | None = None,
    accumulate: bool = False,
) -> Profile:
    """Profile one training step of `model` on `example_inputs` into a chain.

    Parameters
    ----------
    model : nn.Module
        In training mode as you train it; profiled where it is (`device`).
    example_inputs
        A tensor, a tuple of positional arguments, or a dict of keyword arguments.
    device
        Where to profile; defaults to (and must match) the model's device.
    loss_fn
        ``loss_fn(output) -> scalar``; by default `default_loss`.
    blocks
        The chain's blocks, as modules or dotted names (see `resolve_blocks`); every top-level call
        of each is a stage, in call order (a module called T times gives T stages). By default the
        stages are found from the call tree (`checkpoint_solver.profiling.stages`), and
        ``measurement["stages"]`` says what was chosen and why.
    warmup, repeats
        Untimed steps first, then timed steps whose median is kept.
    graph
        Also capture the op-level graph: `capture_region` of the whole model with the stages as
        blocks, the capture the op-level executor replays (the loss stays outside it). If tracing
        fails, the profile keeps its chain, has no graph, and says which call broke tracing in
        ``measurement["graph_error"]`` (with a warning).
    optimizer
        The optimizer you train with, over ``model.parameters()``. Then the chain also records
        the step's model states (`Chain.states`: parameters and buffers, each stage's parameter
        gradients, the optimizer's state and its step's temporaries, measured by real optimizer
        steps whose effects are undone), and budgets default to the whole step
        (`checkpoint_solver.problem.states`).
    accumulate
        You accumulate gradients over micro-batches: ``.grad`` is live throughout the step.

    Raises
    ------
    ProfilingError
        Inputs on another device than the model, blocks that are not part of the model, nest or
        never run, a model that calls no submodules, or an output that gives no scalar loss.
    """
    from checkpoint_solver._args import expect_module

    expect_module(model, "cs.profile")
    for what, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ProfilingError(f"{what}={value!r}: give an integer >= {low}")
    inputs = Inputs.of(example_inputs)
    dev = _check_devices(model, inputs, device)
    params = list(model.parameters())
    saved_grads = [p.grad for p in params]
    snapshot = Snapshot.take(model)
    try:
        # The call tree runs a forward without grad: after the snapshot, restored below.
        tree = call_tree(model, inputs.args, inputs.kwargs)
        if blocks is None:
            calls, note = find_stages(model, tree)
        else:
            calls = stage_calls(tree, resolve_blocks(model, blocks))
            note = f"{len(calls)} stages: every top-level call of the given blocks"
        stepper = _Stepper(model, inputs, calls, loss_fn or default_loss)
        prof = _profile(model, inputs, dev, calls, stepper, warmup, repeats)
        prof = dataclasses.replace(prof, measurement={**prof.measurement, "stages": note})
        if optimizer is not None:
            states, info = _model_states(
                model,
                optimizer,
                prof.measurement["stage_grad_bytes"],
                prof.measurement["stage_grad_extra_bytes"],
                prof.measurement["stage_grad_done_bytes"],
                accumulate,
            )
            prof = dataclasses.replace(
                prof,
                chain=dataclasses.replace(prof.chain, states=states),
                measurement={**prof.measurement, **info},
            )
        if graph:
            prof = _with_graph(prof, model, inputs, calls, repeats)
        return prof
    finally:
        for p, g in zip(params, saved_grads, strict=True):
            p.grad = g
        snapshot.restore()


def _no_tape_forward(
    model: nn.Module, inputs: Inputs, stepper: _Stepper
) -> tuple[dict[Phase, PhaseStats], dict[int, tuple[int, Phase, Phase]]]:
    """Per-stage live storages of a forward that keeps no tape (what ``F_n``/``F_ck`` run: grad
    enabled, saved tensors dropped as the runtime's holders drop them), and per storage, in the
    order they were made, its size, the phase that made it and the phase in which the model's
    code let it go."""
    tracker = StorageTracker(
        ignore={storage_key(t) for t in (*model.parameters(), *model.buffers(), *inputs.tensors())}
    )
    stepper.on_phase = tracker.set_phase
    with tracker, torch.autograd.graph.saved_tensors_hooks(lambda t: None, lambda t: t):
        stepper.step(backward=False)
    stats, _ = tracker.curve(exclude=set())
    freed = {}
    for phase, serial, nbytes in tracker.events:
        if serial and nbytes < 0:
            # Freed before the phase ran an op: let go as the stage before it ended.
            early = phase[0] == "F" and phase[1] > 0 and not tracker.freed_after.get(serial)
            freed[serial] = ("F", phase[1] - 1) if early else phase
    tracker.active = False
    let_go = {
        serial: (r.nbytes, r.produced, freed.get(serial, ("done", 0)))
        for serial, r in tracker.records.items()
    }
    return stats, let_go


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _clear_grads(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _profile(
    model: nn.Module,
    inputs: Inputs,
    dev: torch.device,
    named: list[StageCall],
    stepper: _Stepper,
    warmup: int,
    repeats: int,
) -> Profile:
    # Long: the measured step, then the chain's fields from it in the order they depend on one
    # another (boundaries, tapes, times, gradients, transients, values).
    nb = len(named)
    # The first step checks the blocks (hooks on) and warms up.
    for _ in range(max(1, warmup)):
        _clear_grads(model)
        stepper.step()

    # Plain steps, no hooks: the reference step time.
    plain = []
    for _ in range(repeats):
        _clear_grads(model)
        _sync(dev)
        t0 = time.perf_counter()
        stepper.step(hooks=False)
        _sync(dev)
        plain.append(time.perf_counter() - t0)

    # Timed steps with phase marks.
    phase_times: dict[Phase, list[float]] = {}
    for _ in range(repeats):
        _clear_grads(model)
        clock = _Clock(dev)
        order: list[Phase] = []

        def on_phase(phase: Phase, clock: _Clock = clock, order: list[Phase] = order) -> None:
            clock.mark()
            order.append(phase)

        stepper.on_phase = on_phase
        stepper.step()
        for phase, d in zip(order[:-1], clock.durations(), strict=True):
            phase_times.setdefault(phase, []).append(d)

    # FLOPs in a step of their own: FlopCounterMode's module tracker hooks every module's
    # gradients with torch's multi-grad hook, which holds each gradient until its module's last
    # one arrives, so a step it counts keeps gradients the training step frees (T5's decoder
    # blocks: up to 100 KiB more after a block's backward, measured).
    _clear_grads(model)
    flops_at: list[tuple[Phase, int]] = []
    counter = FlopCounterMode(display=False)
    stepper.on_phase = lambda phase: flops_at.append((phase, counter.get_total_flops()))
    with counter:
        stepper.step()

    # One tracked step: storages and saved tensors.
    _clear_grads(model)
    tracker = StorageTracker(
        ignore={storage_key(t) for t in (*model.parameters(), *model.buffers(), *inputs.tensors())}
    )
    saved: dict[int, set[int]] = {}  # serial -> the forward stages whose tapes saved it

    def on_tracked_phase(phase: Phase) -> None:
        tracker.set_phase(phase)

    def pack(t: torch.Tensor) -> tuple[int | None, torch.Tensor]:
        stage = None
        if tracker.phase[0] == "F":
            stage = tracker.phase[1]
            serial = tracker.serial(t)
            if serial is not None:
                saved.setdefault(serial, set()).add(stage)
        return stage, t

    def unpack(packed: tuple[int | None, torch.Tensor]) -> torch.Tensor:
        stage, t = packed
        if stage is not None:
            stepper.tape_read(stage)
        return t

    stepper.on_phase = on_tracked_phase
    x0 = distinct_storage_nbytes(inputs.tensors())
    stepper.tracker = tracker
    with GradBuffers(model.parameters()) as buffers:
        buffers.tracker = tracker
        with tracker, torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            loss = stepper.step()
    stepper.tracker = None

    grad_keys = buffers.excluded(model.parameters())
    loss_serial = tracker.serial(loss)
    loss_bytes = storage_nbytes(loss)
    stats, measured_peak = tracker.curve(exclude=grad_keys)
    tracker.active = False
    notape, let_go = _no_tape_forward(model, inputs, stepper)

    # Stage k of the phases: 0 prologue, 1..nb blocks, nb+1 epilogue; drop an empty prologue.
    first = 0 if stats.get(("F", 0)) and stats[("F", 0)].ops else 1
    phases = list(range(first, nb + 2))
    records = {k: r for k, r in tracker.records.items() if k not in grad_keys}
    until = _held(records, let_go, nb)

    def crossing(k: int) -> set[int]:
        return {
            key
            for key, r in records.items()
            if r.produced[0] == "F" and r.produced[1] <= k < until[key]
        }

    x = [x0]
    xbar = []
    for k in phases:
        out = crossing(k) if k != nb + 1 else set()
        out_bytes = sum(records[key].nbytes for key in out) if k != nb + 1 else loss_bytes
        # Saved tensors that earlier stages produced are read here, so they belong to a[k-1].
        tape = out | {
            key
            for key, stages in saved.items()
            if k in stages and key in records and records[key].produced == ("F", k)
        }
        tape_bytes = sum(records[key].nbytes for key in tape)
        if k == nb + 1 and (loss_serial is None or loss_serial not in tape):
            tape_bytes += loss_bytes
        x.append(out_bytes)
        xbar.append(max(tape_bytes, out_bytes))

    def median(phase: Phase) -> float:
        return float(statistics.median(phase_times.get(phase, [0.0])))

    uf = [median(("F", k)) for k in phases]
    # Backward: the prologue's phase absorbs any time before the first block's when dropped.
    ub = [median(("B", k)) + (median(("B", 0)) if k == first == 1 else 0.0) for k in phases]
    # Each op's transient is what its phase added at its peak beyond the sizes the simulator's
    # rule names, so the rule gives the measured peak; negative where the rule names bytes the
    # op does not make (values passing through, gradients already made by a later reader).
    # delta[j]: the gradient bytes the backward holds once chain stage j+1 is back-propagated
    # (storages the backward made that are still live when its phase ends).
    held = _backward_held(tracker.events, records)
    grads = [max(0, g) for g in _by_stage(_grad_net(tracker.events, grad_keys), phases, first)]
    done = _by_stage(buffers.done, phases, first)
    # With the parameter gradients counted too: how far each backward's peak differs from its
    # activation peak plus the gradients it leaves (a buffer summed out of place is briefly
    # there twice; a gradient made after the phase's peak was not there at it).
    whole, _ = tracker.curve(exclude=set())
    grad_extra = []
    for j, k in enumerate(phases):
        w, a = whole.get(("B", k)), stats.get(("B", k))
        extra = (w.peak - a.peak - (w.end - a.end)) if w and a else 0
        grad_extra.append(max(extra, -grads[j]))
    # The caller holds the loss until its backward returns (``loss.backward()``) and after: the
    # epilogue's tape frees it in the simulator's B(L), so every later level carries it here
    # (U-Net's MSE loss is a 6 KiB storage; 4 bytes elsewhere).
    delta = [held.get(("B", k), 0) + loss_bytes for k in phases] + [x[-1]]
    of, ofn, ob = [], [], []
    for j, k in enumerate(phases):
        f = stats.get(("F", k))
        b = stats.get(("B", k))
        # F_all peaks at xbar + of (the taped forward), F_n/F_ck at x + ofn (the forward that
        # keeps no tape; the epilogue's is the taped one: it is never run without its tape).
        g = notape.get(("F", k)) if k != nb + 1 else f
        of.append(((f.peak - f.start) if f else 0) - xbar[j])
        ofn.append(((g.peak - g.start) if g else 0) - x[j + 1])
        seed = x[-1] if k == nb + 1 else 0
        ob.append(((b.peak - b.start) if b else 0) - delta[j] - seed)
    values = _values(records, saved, until, first, nb)

    flops_f: dict[int, int] = {}
    flops_b: dict[int, int] = {}
    for (phase, at), (_, nxt) in itertools.pairwise(flops_at):
        target = flops_f if phase[0] == "F" else flops_b
        if phase[0] in ("F", "B"):
            target[phase[1]] = target.get(phase[1], 0) + (nxt - at)
    stage_infos = []
    for k in phases:
        mods: tuple[str, ...] = ()
        call = 0
        if k == 0:
            name = StageKind.PROLOGUE.value
        elif k == nb + 1:
            name = StageKind.EPILOGUE.value
        else:
            c = named[k - 1]
            name, mods, call = _stage_name(c), (c.name,), c.call
        fb = flops_b.get(k, 0) + (flops_b.get(0, 0) if k == first == 1 else 0)
        stage_infos.append(StageInfo(name, mods, flops_f.get(k, 0), fb, call))

    chain = Chain(
        uf=tuple(uf),
        ub=tuple(ub),
        x=tuple(x),
        xbar=tuple(xbar),
        of=tuple(of),
        ob=tuple(ob),
        ofn=tuple(ofn),
        delta=tuple(delta),
        values=values,
        cost_unit="seconds",
        name=f"{type(model).__name__} ({len(phases)} stages)",
    )
    source = {
        "torch": torch.__version__,
        "device": str(dev),
        "device_name": _device_name(dev),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": type(model).__name__,
        "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
    }
    measurement = {
        "warmup": warmup,
        "repeats": repeats,
        "step_seconds": float(statistics.median(plain)),
        "step_seconds_all": [float(t) for t in plain],
        "activation_peak_bytes": int(measured_peak) + x0,
        "activation_peak_counts": (
            "the inputs plus every storage created by ops during one plain training step "
            "(activations, saved tensors, activation gradients, temporaries); not parameters, "
            "buffers or parameter gradients"
        ),
        "input_bytes": x0,
        "stage_grad_bytes": grads,
        "stage_grad_extra_bytes": grad_extra,
        "stage_grad_done_bytes": done,
    }
    return Profile(chain=chain, stages=tuple(stage_infos), source=source, measurement=measurement)


def _grad_net(events: list[tuple[Phase, int, int]], grad_keys: set[int]) -> dict[Phase, int]:
    """Per phase, the net change of parameter-gradient storages (a buffer summed out of place
    replaces its old self): the gradient bytes each backward leaves."""
    net: dict[Phase, int] = {}
    for phase, key, nbytes in events:
        if key and key in grad_keys:
            net[phase] = net.get(phase, 0) + nbytes
    return net


def _by_stage(per_phase: Mapping[Phase, int], phases: list[int], first: int) -> list[int]:
    """Per chain stage, its backward phase's number; a prologue without ops (dropped from the
    chain) has its backward phase counted in stage 1's."""
    out = [per_phase.get(("B", k), 0) for k in phases]
    if first == 1 and out:
        out[0] += per_phase.get(("B", 0), 0)
    return out


def _model_states(
    model: nn.Module,
    optimizer: Any,
    grads: list[int],
    extra: list[int],
    done: list[int],
    accumulate: bool,
) -> tuple[ModelStates, dict[str, Any]]:
    """The step's model states: parameters and buffers, the gradients per stage, and the
    optimizer's state and step temporaries, measured by real steps whose effects are undone
    (the parameters and the optimizer's state are restored)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ProfilingError(
            f"optimizer must be a torch.optim.Optimizer over the model's parameters, got "
            f"{type(optimizer).__name__}"
        )
    model_keys = {storage_key(t) for t in (*model.parameters(), *model.buffers())}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not all(storage_key(p) in model_keys for p in params):
        raise ProfilingError(
            "the optimizer updates tensors that are not the model's parameters: build it over "
            "model.parameters()"
        )
    for p in params:
        if p.grad is None and p.requires_grad:
            p.grad = torch.zeros_like(p)
    snapshot = [p.detach().clone() for p in params]
    saved = copy.deepcopy(optimizer.state_dict())

    def step() -> None:
        try:
            optimizer.step()
        except Exception as exc:  # the optimizer's own failure, named as such
            raise ProfilingError(
                f"{type(optimizer).__name__}.step() failed while measuring its state "
                f"({type(exc).__name__}: {exc}); an optimizer whose step needs a closure "
                f"(LBFGS) cannot be measured: profile without optimizer= and budget for it"
            ) from exc

    try:
        if not optimizer.state:
            step()  # the first step makes the state (AdamW's moments)
        state = optimizer_state_tensors(optimizer)
        held = [*model.parameters(), *model.buffers(), *state]
        held += [p.grad for p in model.parameters() if p.grad is not None]
        tracker = StorageTracker(ignore={storage_key(t) for t in held})
        tracker.set_phase(("S", 0))
        with tracker:
            step()
        _, step_peak = tracker.curve(exclude=set())
        tracker.active = False
        state_bytes = distinct_storage_nbytes(state)
    finally:
        with torch.no_grad():
            for p, v in zip(params, snapshot, strict=True):
                p.copy_(v)
        optimizer.load_state_dict(saved)
    states = ModelStates(
        params=distinct_storage_nbytes([*model.parameters(), *model.buffers()]),
        optimizer=state_bytes,
        grads=tuple(grads),
        grad_extra=tuple(extra),
        # Accumulating, a gradient is added into .grad when its accumulator runs.
        grads_done=tuple(done) if accumulate and sum(done) == sum(grads) else (),
        step=int(step_peak),
        accumulate=bool(accumulate),
    )
    info = {
        "optimizer": type(optimizer).__name__,
        "optimizer_state_bytes": state_bytes,
        "optimizer_step_bytes": int(step_peak),
        "gradient_accumulation": bool(accumulate),
    }
    return states, info


def _backward_held(
    events: list[tuple[Phase, int, int]], records: dict[int, Any]
) -> dict[Phase, int]:
    """Per backward phase, the live bytes of storages made by the backward when it ends (the
    tracked records only: parameter gradients are not among them)."""
    out: dict[Phase, int] = {}
    live = 0
    last: Phase | None = None
    for phase, key, nbytes in events:
        if phase != last:
            if last is not None and last[0] == "B":
                out[last] = live
            last = phase
        if key and key in records and records[key].produced[0] == "B":
            live += nbytes
    if last is not None and last[0] == "B":
        out[last] = live
    return out


def _held(
    records: dict[int, Any], let_go: dict[int, tuple[int, Phase, Phase]], nb: int
) -> dict[int, int]:
    """Per forward storage, the last phase through which the model's code holds it: its last
    read, or later (a variable still naming it, a container's call that keeps its argument until
    it returns), as the no-tape forward, whose storages are made in the same order, shows (a
    storage made elsewhere there keeps its last read)."""
    out = {}
    for key, r in records.items():
        if r.produced[0] != "F":
            continue
        last = r.last_forward_use
        other = let_go.get(key)
        if other is not None and other[:2] == (r.nbytes, r.produced):
            phase = other[2]
            last = max(last, min(phase[1] if phase[0] == "F" else nb + 1, nb + 1))
        out[key] = last
    return out


def _values(
    records: dict[int, Any], saved: dict[int, set[int]], until: dict[int, int], first: int, nb: int
) -> tuple[BoundaryValue, ...]:
    """Every storage that crosses a cut (phase k is chain stage ``k - first + 1``), with the
    stages that read it, those whose tapes saved it, and the last one the model's code holds it
    through."""
    out = []
    for key, r in records.items():
        if r.produced[0] != "F" or until[key] <= max(r.produced[1], first):
            continue
        p = r.produced[1]
        readers = tuple(sorted(s - first + 1 for s in r.readers if p < s <= nb + 1))
        held = until[key] - first + 1
        keep = {p, *r.readers}
        kept = tuple(sorted(s - first + 1 for s in saved.get(key, ()) if s in keep))
        out.append(BoundaryValue(r.nbytes, p - first + 1, readers, kept, held))
    return tuple(out)


def _stage_name(c: StageCall) -> str:
    """``name`` for a module called once, ``name#i`` for its i-th call (from 1) when repeated."""
    return f"{c.name}#{c.call}" if c.call else c.name


def _with_graph(
    prof: Profile,
    model: nn.Module,
    inputs: Inputs,
    named: list[StageCall],
    repeats: int,
) -> Profile:
    """The profile with its op graph: the same capture the op-level executor replays
    (`capture_region` of the whole model, its stages as blocks), so a schedule solved on
    ``prof.graph`` applies to the model it came from."""
    from checkpoint_solver.profiling.region import capture_region

    try:
        region = capture_region(
            model, inputs.args, inputs.kwargs, stages=named, repeats=min(repeats, 3)
        )
    except ProfilingError as exc:
        warnings.warn(f"profile: chain only; {exc}", stacklevel=3)
        measurement = {**prof.measurement, "graph_error": str(exc)}
        return dataclasses.replace(prof, measurement=measurement)
    graph = region.graph
    block = graph.block or tuple(0 if r == Role.OP else -1 for r in graph.role)
    # Block k (0 prologue, 1.. the stages, len + 1 after them) -> chain stage: the chain drops an
    # empty prologue; the tangents and the sink are the epilogue's (the loss is back-propagated
    # there).
    offset = 0 if prof.stages[0].kind is StageKind.PROLOGUE else 1
    last = prof.chain.length - 1
    epilogue = {*region.tangents, region.sink}
    stages = tuple(
        last if v in epilogue else (-1 if block[v] < 0 else min(last, max(0, block[v] - offset)))
        for v in range(graph.size)
    )
    st = prof.chain.states
    if st is not None and region.grad_bytes:
        # The graph leaves the inputs out of its memory; whole-step budgets count them.
        graph = dataclasses.replace(
            graph,
            states=dataclasses.replace(
                st,
                inputs=region.input_bytes,
                grads=region.grad_bytes,
                grad_extra=(),
                grads_done=(),
                windows=region.grad_windows,
            ),
        )
    return dataclasses.replace(prof, graph=graph, graph_stages=stages)
