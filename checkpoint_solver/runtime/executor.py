"""Replay a chain schedule while a model trains: `apply(model, schedule)`, then train as usual.

How it works (the saved-tensor-hooks design of torch's non-reentrant checkpoint, driven by the
schedule instead of by nesting):

- **Stages.** A stage is one call of a block module (an RNN cell called T times is T stages) and
  the code after it up to the next stage's call; the prologue is the code before the first stage,
  the epilogue the code after the last one and the loss. Calls are numbered as the profiler
  numbers them (`checkpoint_solver.profiling.stages.StageHooks`).
- **Forward phase.** The model's forward runs once, with grad, as written; the executor follows it
  with hooks on the stage modules and records the prologue and the code between stages
  (`checkpoint_solver.runtime.program`). Inside a stage the schedule runs without its tape
  (``F_n``/``F_ck``), every tensor autograd saves is replaced by an empty holder, so the tape is
  freed as the forward goes; stages run with ``F_all`` keep their tapes. A boundary ``a[i]`` the
  schedule keeps is every value made at or before stage i that a later rerun reads (the carried
  activation, skip connections, masks, rotary tables, the encoder output), held detached (the same
  storages) until the schedule drops it. One autograd graph results, so ``loss.backward()``,
  ``torch.autograd.grad`` and DDP's gradient hooks work unchanged, and the original parameters
  receive the gradients.
- **Backward phase.** Autograd reaches the stages in the order ``B(L), ..., B(1)``. When the
  gradient of stage k's outputs is ready (a gradient hook: ``B(k)`` is about to start), the executor
  runs every op the schedule puts before ``B(k)``: ``F_n``/``F_ck`` rerun a stage from the nearest
  kept boundary to make the next checkpoint, ``F_all(k)`` reruns stage k and fills its holders in
  save order (count, shape, dtype and device checked), explicit frees and the frees each ``B``
  implies drop what the schedule drops. ``B(k)`` is then autograd's own backward of stage k. A
  holder unpacked before it was filled advances the schedule the same way (when a stage's outputs
  carry no gradient hook); an op out of step with what autograd asks for raises `ReplayError`.
- **Faithful replay.** A rerun restores the CPU and CUDA RNG states the stage started with (dropout
  masks match), replays the autocast state (each recorded call's own, too), restores the buffers
  the stage mutates (BatchNorm running statistics are updated once per step), and runs with grad
  enabled on detached inputs whose ``requires_grad`` matches the original (the same kernels and
  the same saved tensors as the forward).
- **First step.** Before it, one forward without grad (recorded, keeping nothing; the RNG
  streams and buffers are put back) learns which values later reruns read, so from the first
  step on the kept boundaries hold exactly those. With ``apply(..., probe=False)`` the first step
  does not know them yet: its kept boundaries hold every live value made so far, until its
  forward ends.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from checkpoint_solver.errors import (
    ApplyError,
    FingerprintMismatchError,
    InvalidArgumentError,
    ReplayError,
)
from checkpoint_solver.problem import Chain, Graph, fingerprint
from checkpoint_solver.problem.profile import Profile, StageKind
from checkpoint_solver.profiling.snapshot import Snapshot
from checkpoint_solver.profiling.stages import (
    StageCall,
    StageHooks,
    profile_calls,
    resolve_blocks,
    when_grads_done,
)
from checkpoint_solver.profiling.tracker import distinct_storage_nbytes, storage_key
from checkpoint_solver.runtime import applied
from checkpoint_solver.runtime.holders import Holder, Holders, discard, no_unpack
from checkpoint_solver.runtime.offload import Copier, Copy, HostCopy
from checkpoint_solver.runtime.plan import Forward, ReplayPlan, forward_kind
from checkpoint_solver.runtime.program import (
    Boundary,
    Program,
    Recorder,
    Values,
    detach,
    needed_sets,
)
from checkpoint_solver.runtime.stage_state import BufferWatch, StageBuffers, StageStart
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.schedule.ops import (
    Bwd,
    FreeActivation,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
    Offload,
    Op,
    Prefetch,
)

__all__ = ["apply", "is_applied", "last_trace", "remove"]

# .state: the _Run being forwarded, or _REPLAYING while the executor reruns
_tls = threading.local()

_REPLAYING = object()  # the executor is rerunning a stage: its own hooks stand aside


def _state() -> Any:
    return getattr(_tls, "state", None)


@contextmanager
def _tls_state(state: Any) -> Iterator[None]:
    previous = _state()
    _tls.state = state
    try:
        yield
    finally:
        _tls.state = previous


class _Run:
    """The state of one forward/backward: values, holders, kept boundaries and the schedule
    cursor."""

    def __init__(self, ex: _Executor, args: Any, kwargs: Any, *, probe: bool = False) -> None:
        self.ex = ex
        self.probe = probe  # a no-grad forward that only learns what the reruns read
        self.plan = ex.plan
        self.pos = 0  # next op of the schedule
        self.stage = 0  # the stage being forwarded (forward phase)
        self.values = Values()
        self.programs: dict[int, Program] = {}
        self.recorder: Recorder | None = None
        self.holders = Holders()
        self.starts: dict[int, StageStart] = {}
        self.plain: dict[int, Boundary] = {}
        self.taped: dict[int, Boundary] = {}
        self.host: dict[int, HostCopy] = {}  # offloaded boundaries' host copies
        # Copies in flight: (the index of the op beside which each runs, what ends it).
        self.pending: list[tuple[int, Callable[[], None]]] = []
        self.resident: set[int] | None = None
        self.input_tensors = [
            t
            for t in tree_flatten((tuple(args), dict(kwargs or {})))[0]
            if isinstance(t, torch.Tensor)
        ]
        self.needed: dict[int, frozenset[int]] | None = ex.needed
        self.inputs = Boundary({})  # a[0]
        self.watch: BufferWatch | None = None  # the open stage's buffers
        self.trace: list[str] | None = [] if ex.record else None
        self.b_started = self.plan.n + 1  # lowest k whose B(k) has started (n + 1: none yet)
        self.forward_open = True
        self.hooks: Any = None
        self._hooks_on = not self.plan.trivial
        if self._hooks_on:
            self.hooks = torch.autograd.graph.saved_tensors_hooks(self.holders.pack, self._unpack)
            self.hooks.__enter__()
        for t in tree_flatten((tuple(args), dict(kwargs or {})))[0]:
            if isinstance(t, torch.Tensor):
                self.values.add(t, 0)
        if ex.prologue:
            self.inputs = self.values.live(0)
            self._begin_stage(1, [])
            self._record(Program(1))
        else:
            # Code before the first block without a prologue stage (views, casts): its values
            # join the inputs a[0].
            self._record(Program(0))

    # -- forward phase ----------------------------------------------------------------------
    def _record(self, program: Program) -> None:
        self.programs[program.stage] = program
        self.recorder = Recorder(self.values, program, self.ex.device_type)
        self.recorder.__enter__()

    def _stop_recording(self) -> None:
        if self.recorder is not None:
            recorder, self.recorder = self.recorder, None
            recorder.__exit__(None, None, None)

    def _boundary(self, j: int) -> Boundary:
        """a[j] as the schedule keeps it: the values later reruns read (all live ones made so far
        while that is not known yet, in a first step)."""
        if self.needed is None:
            return self.values.live(j)
        if self.ex.needed_from_probe:
            # The first step after the probe: should the forward with grad make other calls than
            # the probe did, fall back to what a first step without it keeps.
            try:
                return self.values.env(self.needed[j], missing="")
            except ReplayError:
                self.needed = None
                return self.values.live(j)
        return self.values.env(
            self.needed[j],
            missing=f"a value of a[{j}] that a later rerun reads was freed before stage {j + 1} "
            f"started; the model's forward made other calls than in the step before",
        )

    def _begin_stage(self, s: int, grad_leaves: list[torch.Tensor]) -> None:
        """Stage s starts; everything up to a[s-1] is made."""
        ex, plan = self.ex, self.plan
        if s != self.stage + 1:
            raise ReplayError(
                f"stage {s} started after stage {self.stage}: the stages of {ex.model_name} must "
                f"run once each, in order"
            )
        made = len(self.values.producer)
        if self.probe:
            ex.probe_counts[s] = made
        elif ex.needed_from_probe and self.needed is not None and ex.probe_counts.get(s) != made:
            # The forward with grad made other calls than the probe: from here on, keep what a
            # first step without the probe keeps (every live value, trimmed when it ends).
            self.needed = None
        if s > 1:
            self._end_stage()
            # a[s-1] is now known: what stage s-1's op does with it, then the frees before op s.
            prev = plan.forward_kinds[s - 2]
            if prev in (Forward.NO_TAPE, Forward.CHECKPOINT):
                self.plain[s - 1] = self._boundary(s - 1)
            elif s - 1 in plan.keep_taped:
                self.taped[s - 1] = self._boundary(s - 1)
            if grad_leaves and not self.probe:
                self._hook_b_start(s - 1, grad_leaves)
        self._land(self.pos)
        while isinstance(plan.ops[self.pos], (FreeActivation, Offload, Prefetch)):
            between = plan.ops[self.pos]
            if isinstance(between, FreeActivation):
                self.plain.pop(between.index, None)
            elif isinstance(between, (Offload, Prefetch)):
                self._copy(between)
            self.pos += 1
        op = plan.ops[self.pos]
        kind = forward_kind(op)
        self.pos += 1
        if kind is Forward.NO_TAPE and s > 1:
            self.plain.pop(s - 1, None)
        self.stage = s
        if self.trace is not None:
            self.trace.append(str(op))
        if s in plan.replayed:
            self.starts[s] = StageStart.capture(ex.device_type)
        # Until the first step has run, values are compared too (`StageBuffers.watch`).
        self.watch = ex.regions[s - 1].watch(compare_values=not ex.probed)
        self.holders.open(s if kind is not Forward.TAPE else None)

    def _end_stage(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        self.holders.open(None)

    def block_pre(self, k: int, args: Any, kwargs: Any) -> None:
        self._stop_recording()
        ex = self.ex
        s = k + 1 + ex.prologue
        program = Program(s, module=ex.calls[k].module)
        leaves, program.spec = tree_flatten((tuple(args), dict(kwargs or {})))
        program.args = [self.values.arg(v) for v in leaves]
        grad_leaves = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
        if s == 1:
            self.inputs = self.values.live(0)
        self._begin_stage(s, grad_leaves)
        self.programs[s] = program

    def block_post(self, k: int, output: Any) -> None:
        ex = self.ex
        s = k + 1 + ex.prologue
        program = self.programs[s]
        leaves = tree_flatten(output)[0]
        program.outs = [
            self.values.add(t, s) if isinstance(t, torch.Tensor) else None for t in leaves
        ]
        if k == len(ex.calls) - 1:
            grad_leaves = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
            self._begin_stage(s + 1, grad_leaves)  # the epilogue: never rerun, nothing to record
        else:
            self._record(program)

    def extra_call(self, name: str, index: int) -> None:
        raise ReplayError(
            f"{name!r} was called {index + 1} times in one forward of {self.ex.model_name}, more "
            f"than the schedule's stages for it; profile the model as it runs now and solve again"
        )

    def finish_forward(self) -> None:
        ex, plan = self.ex, self.plan
        self._stop_recording()
        self.forward_open = False
        self._close_hooks()
        if self.stage != plan.n:
            raise ReplayError(
                f"only {self.stage} of the schedule's {plan.n} stages ran in the forward of "
                f"{ex.model_name}; the schedule needs every stage once per forward"
            )
        ex.probed = True
        from_probe, ex.needed_from_probe = ex.needed_from_probe, self.probe
        needed = needed_sets(self.programs, self.values.producer, plan.replayed, plan.n)
        if from_probe and not self.probe:
            for j, env in (*self.plain.items(), *self.taped.items()):
                if needed[j] - env.keys():
                    raise ReplayError(
                        f"{ex.model_name}'s forward makes other torch calls with grad than "
                        f"without, so the probe before the first step learnt the wrong values "
                        f"for a[{j}]; apply the schedule with probe=False"
                    )
        if self.needed is None:
            # A first step: drop what its boundaries held beyond what the reruns read.
            for j, env in (*self.plain.items(), *self.taped.items()):
                for h in [h for h in env if h not in needed[j]]:
                    del env[h]
        self.inputs = Boundary({h: v for h, v in self.inputs.items() if h in needed[0]})
        self.needed = ex.needed = needed
        self._land(self.pos)
        while self.pos < plan.backward_start:
            op = plan.ops[self.pos]
            if isinstance(op, FreeActivation):
                self.plain.pop(op.index, None)
            elif isinstance(op, (Offload, Prefetch)):
                self._copy(op)
            self.pos += 1

    def abort(self) -> None:
        """The forward raised: leave autograd's saved-tensor hooks and torch's modes as they
        were."""
        self._stop_recording()
        self.forward_open = False
        self._close_hooks()

    def _close_hooks(self) -> None:
        if self.hooks is not None:
            hooks, self.hooks = self.hooks, None
            hooks.__exit__(None, None, None)

    # -- saved tensors -------------------------------------------------------------------------
    def _unpack(self, h: Any) -> torch.Tensor:
        if not isinstance(h, Holder):
            return h
        if h.value is None:
            self.advance(h.stage)
        return h.take()

    # -- backward phase -------------------------------------------------------------------------
    def _hook_b_start(self, k: int, tensors: list[torch.Tensor]) -> None:
        if self.ex.record or self._hooks_on:
            when_grads_done(tensors, functools.partial(self.advance, k))

    def advance(self, k: int) -> None:
        """Run the schedule's ops up to ``B(k)``: autograd is about to back-propagate stage k."""
        plan = self.plan
        if self.forward_open:
            raise ReplayError("backward started before the model's forward returned")
        if k >= self.b_started:
            return
        while True:
            self._land(self.pos)
            op = plan.ops[self.pos]
            handler = _HANDLERS.get(type(op))
            if handler is None:
                raise ReplayError(f"the executor has no handler for {op!r} (internal error)")
            if handler(self, op, k):
                return
            self.pos += 1

    # The handlers of `advance`, one per op type: each runs its op while autograd waits to
    # start ``B(k)``, and says whether the cursor has reached it.
    def _backward(self, op: Bwd, k: int) -> bool:
        if op.stage == k:
            self.b_started = k
            if self.trace is not None:
                self.trace.append(str(op))
            return True
        if op.stage < k:
            raise ReplayError(
                f"autograd reached stage {k} after the schedule's {op}: the model's "
                f"backward does not follow the chain"
            )
        if op.stage < self.b_started:  # finished without a hook (B(n) always)
            if self.trace is not None:
                self.trace.append(str(op))
        self.b_started = op.stage
        if op.stage > 1:
            self.plain.pop(op.stage - 1, None)
        self.taped.pop(op.stage, None)
        return False

    def _free(self, op: FreeActivation, k: int) -> bool:
        self.plain.pop(op.index, None)
        return False

    def _copy_op(self, op: Offload | Prefetch, k: int) -> bool:
        self._copy(op)
        return False

    # -- offload ----------------------------------------------------------------------------
    def _copy(self, op: Offload | Prefetch) -> None:
        """Start the copy of `op` (at `pos`); it ends when the next compute op has been issued
        (`_land`), as the simulator's rules say."""
        j = op.index
        due = self.plan.beside[self.pos]
        if self.trace is not None:
            self.trace.append(str(op))
        if isinstance(op, Offload):
            if j not in self.plain:
                raise ReplayError(f"{op}: a[{j}] is not kept on the device (internal error)")
            copy = self.ex.copier.offload(self.plain[j], self._resident() | self._elsewhere(j))
            assert isinstance(copy.result, HostCopy)
            self.host[j] = copy.result
            self.pending.append((due, functools.partial(self._offloaded, j, copy)))
        else:
            if j not in self.host:
                raise ReplayError(f"{op}: a[{j}] has no host copy (internal error)")
            copy = self.ex.copier.prefetch(self.host[j], self.ex.device)
            self.pending.append((due, functools.partial(self._prefetched, j, copy)))

    def _resident(self) -> set[int]:
        """Storages the device keeps whatever the schedule does: the call's inputs, the
        parameters and the buffers (a boundary's view of one is not worth a copy)."""
        if self.resident is None:
            model = self.ex.model
            held = [*self.inputs.values(), *self.input_tensors]
            held += [*model.parameters(), *model.buffers()]
            self.resident = {storage_key(t) for t in held}
        return self.resident

    def _elsewhere(self, j: int) -> set[int]:
        """Storages another kept boundary holds on the device (a plain one, or a taped one: kept
        for a later forward to read): offloading a[j] would free none of them, so they stay (as
        the simulator's `_held_elsewhere` counts them)."""
        held = [e for k, e in self.plain.items() if k != j]
        held += list(self.taped.values())
        return {storage_key(t) for env in held for t in env.values()}

    def _offloaded(self, j: int, copy: Copy) -> None:
        copy.wait()
        self.plain.pop(j, None)

    def _prefetched(self, j: int, copy: Copy) -> None:
        copy.wait()
        self.plain[j] = copy.result
        self.host.pop(j, None)

    def _land(self, pos: int) -> None:
        """End the copies that ran beside an op before `pos` (that op has been issued)."""
        if not self.pending:
            return
        still = []
        for due, end in self.pending:
            if due < pos:
                end()
            else:
                still.append((due, end))
        self.pending = still

    def _source(self, i: int) -> Boundary:
        if i == 0:
            return self.inputs
        for held in (self.plain, self.taped):
            if i in held:
                return held[i]
        raise ReplayError(f"a[{i}] is not held when the schedule reads it (internal error)")

    def _forward(self, op: Op, k: int) -> bool:
        kind = forward_kind(op)
        s: int = op.stage  # type: ignore[union-attr]
        out = self.ex.rerun(self, s, self._source(s - 1), tape=kind is Forward.TAPE)
        if self.trace is not None:
            self.trace.append(str(op))
        if kind is Forward.TAPE:
            if out is not None:  # s in keep_taped
                self.taped[s] = out
        else:
            assert out is not None
            self.plain[s] = out
            if kind is Forward.NO_TAPE and s > 1:
                self.plain.pop(s - 1, None)
        return False


_HANDLERS: dict[type[Op], Callable[[_Run, Any, int], bool]] = {
    Bwd: _Run._backward,
    FreeActivation: _Run._free,
    FwdNoTape: _Run._forward,
    FwdCheckpoint: _Run._forward,
    FwdTape: _Run._forward,
    Offload: _Run._copy_op,
    Prefetch: _Run._copy_op,
}


class _Executor:
    def __init__(
        self,
        model: nn.Module,
        plan: ReplayPlan,
        calls: list[StageCall],
        prologue: bool,
        input_bytes: int | None,
        record: bool,
        probe: bool = True,
    ) -> None:
        self.model = model
        self.model_name = type(model).__name__
        self.plan = plan
        self.prologue = prologue
        self.calls = calls
        self.record = record
        self.input_bytes = input_bytes
        self.warned_inputs = False
        self.probed = False  # a step has found which buffers each region's forward writes
        self.needed: dict[int, frozenset[int]] | None = None  # learnt by the first step
        self.structure = ""  # the call structure `needed` was learnt for
        self.probe_first = probe  # learn `needed` by a no-grad forward before the first step
        self.needed_from_probe = False  # `needed` was learnt by the probe, not by a step
        self.probe_counts: dict[int, int] = {}  # values made before each stage, in the probe
        self.last_trace: list[str] | None = None
        self.device = next(
            (t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu")
        )
        self.device_type = self.device.type
        self.copier = Copier(self.device_type)
        modules = {id(c.module): c.module for c in calls}
        in_blocks = {id(b) for m in modules.values() for b in m.buffers()}
        outside = [b for b in model.buffers() if id(b) not in in_blocks]
        self.regions: list[StageBuffers] = []
        if prologue:
            self.regions.append(StageBuffers(list(outside)))
        for c in calls:
            self.regions.append(StageBuffers([*c.module.buffers(), *outside]))
        self.regions.append(StageBuffers())
        self.stage_hooks = StageHooks(
            calls,
            self._block_pre,
            self._block_post,
            self._extra,
            active=lambda: isinstance(_state(), _Run) and _state().ex is self,
        )
        self.handles = [
            model.register_forward_pre_hook(self._model_pre, with_kwargs=True),
            model.register_forward_hook(self._model_post),
            model.register_forward_hook(self._model_cleanup, always_call=True),
            # First, so other hooks' calls are not taken for the glue's.
            *self.stage_hooks.install(prepend=True),
        ]

    # -- hooks ------------------------------------------------------------------------------
    def _model_pre(self, model: nn.Module, args: Any, kwargs: Any) -> None:
        applied.refuse_compiling(model)
        if _state() is not None or not torch.is_grad_enabled():
            return
        if self.plan.trivial and not self.record:
            return
        self._check_inputs(args, kwargs)
        # What a step keeps is learnt per call structure (its values are numbered from the
        # inputs on): a call with other arguments (a Trainer's extra num_items_in_batch) learns
        # again.
        structure = str(tree_flatten((tuple(args), dict(kwargs or {})))[1])
        if structure != self.structure:
            self.needed = None
            self.structure = structure
        if self.needed is None and self.probe_first and not self.plan.trivial:
            self._probe(model, args, kwargs)
        self.stage_hooks.reset()
        run = _Run(self, args, kwargs)
        _tls.state = run
        self.last_trace = run.trace

    def _probe(self, model: nn.Module, args: Any, kwargs: Any) -> None:
        """Before the first step: the forward once without grad, recorded but keeping nothing,
        to learn what each kept boundary must hold (`needed`), so that the first step holds no
        more than the later ones (without it, the first step keeps every live value at its
        boundaries until its forward ends). The RNG streams and the buffers are put back: the
        step then runs exactly as without the probe."""
        snapshot = Snapshot.take(model)
        with torch.no_grad():
            self.stage_hooks.reset()
            run = _Run(self, args, kwargs, probe=True)
            _tls.state = run
            try:
                try:
                    model.forward(*args, **kwargs)
                finally:
                    _tls.state = None
                run.finish_forward()
            except ReplayError as exc:
                run.abort()
                self.needed = None
                warnings.warn(
                    f"the first step's probe of {self.model_name} failed ({exc}); the first step "
                    f"keeps every live value at its boundaries and may peak above the prediction",
                    stacklevel=4,
                )
            except BaseException:
                run.abort()
                raise
            finally:
                snapshot.restore()

    def _model_post(self, model: nn.Module, args: Any, output: Any) -> None:
        run = _state()
        if isinstance(run, _Run) and run.ex is self and run.forward_open:
            _tls.state = None
            run.finish_forward()

    def _model_cleanup(self, model: nn.Module, args: Any, output: Any) -> None:
        run = _state()
        if isinstance(run, _Run) and run.ex is self and run.forward_open:
            _tls.state = None
            run.abort()

    def _block_pre(self, k: int, args: Any, kwargs: Any) -> None:
        applied.refuse_compiling(self.model)
        _state().block_pre(k, args, kwargs)

    def _block_post(self, k: int, output: Any) -> None:
        _state().block_post(k, output)

    def _extra(self, name: str, index: int) -> None:
        _state().extra_call(name, index)

    def _check_inputs(self, args: Any, kwargs: Any) -> None:
        if self.input_bytes is None or self.warned_inputs:
            return
        leaves = tree_flatten((tuple(args), dict(kwargs or {})))[0]
        got = distinct_storage_nbytes(t for t in leaves if isinstance(t, torch.Tensor))
        if got > self.input_bytes:
            self.warned_inputs = True
            warnings.warn(
                f"{self.model_name} got {got} bytes of inputs but the schedule was solved for "
                f"{self.input_bytes} (a larger batch or sequence?): gradients stay exact, but the "
                f"memory promise holds only for the profiled size; profile and solve again",
                stacklevel=4,
            )

    # -- reruns -----------------------------------------------------------------------------
    def rerun(self, run: _Run, s: int, src: Boundary, *, tape: bool) -> Boundary | None:
        """Run stage s again from the boundary `src`; with `tape`, fill its holders. Returns the
        next boundary a[s] when the schedule keeps it."""
        with ExitStack() as stack:
            stack.enter_context(_tls_state(_REPLAYING))
            run.starts[s].enter(stack)
            self.regions[s - 1].protect(stack)
            stack.enter_context(torch.enable_grad())
            if tape:
                filler = run.holders.filler(s)
                stack.enter_context(
                    torch.autograd.graph.saved_tensors_hooks(filler.pack, no_unpack)
                )
            else:
                stack.enter_context(torch.autograd.graph.saved_tensors_hooks(discard, no_unpack))
            src.check(s)
            # Fresh detached leaves per rerun: each builds its own throwaway graph.
            env: dict[int, Any] = {h: detach(t) for h, t in src.items()}
            returned = not tape or s in self.plan.keep_taped
            assert run.needed is not None
            run.programs[s].run(env, run.needed[s] if returned else ())
            if tape:
                filler.done()
        if not returned:
            return None
        missing = [h for h in run.needed[s] if h not in env]
        if missing:
            raise ReplayError(
                f"stage {s} did not make {len(missing)} of the values a later rerun reads when "
                f"rerun; its forward must make the same calls every time it runs"
            )
        return Boundary({h: detach(env[h]) for h in run.needed[s]})


def _same_problem(schedule: Schedule, problem: Chain | Graph, name: str) -> None:
    """Raise unless `schedule` was solved for `problem` (the profile's chain or graph)."""
    got = fingerprint(problem)
    if got != schedule.fingerprint:
        unit, size = (
            ("stages", problem.length) if isinstance(problem, Chain) else ("nodes", problem.size)
        )
        raise FingerprintMismatchError(
            f"the schedule was solved for problem {schedule.fingerprint[:12]} "
            f"({schedule.size} {unit}) but the profile's {name} is {got[:12]} "
            f"({size} {unit}); solve again for this profile: "
            f"cs.solve(profile.{name}, budget)"
        )


def apply(
    model: nn.Module,
    schedule: Schedule,
    profile: Profile | None = None,
    *,
    blocks: Sequence[nn.Module | str] | str | None = None,
    record: bool = False,
    probe: bool = True,
) -> nn.Module:
    """Make `model` train under `schedule`; returns `model` itself, hooked in place.

    The model keeps its call signature, parameters, ``state_dict`` and class; a forward with grad
    enabled then replays the schedule (a forward without grad runs as before). `remove` undoes it.

    Parameters
    ----------
    model : nn.Module
        The model the schedule was solved for, on its training device.
    schedule : Schedule
        A chain schedule (``dp``, ``revolve``, ``sqrt``, ``uniform``, ``store_all``, ...) solved on
        ``profile.chain``, or a graph schedule (``hierarchical``, ``ilp``, ``greedy``, ...) solved on
        ``profile.graph`` or on a `capture_region` graph (replayed op by op; the region is captured
        again at the first training call and must match the schedule).
    profile : Profile, optional
        The profile the schedule was solved from. Its chain's (or graph's) fingerprint must match
        the schedule's, and its stages name the blocks. Without it, `blocks` (or the default blocks
        of `resolve_blocks`) must give the schedule's number of stages.
    blocks
        The blocks, as for `checkpoint_solver.profiling.profile`, when no profile is given.
    record : bool
        Keep the ops each step actually ran (see `last_trace`).
    probe : bool
        Chain schedules: before the first training step, run the forward once without grad
        (RNG streams and buffers put back) to learn what each kept boundary must hold, so the
        first step peaks no higher than the later ones. Costs one no-grad forward, once.
        ``False``: the first step keeps every live value at its boundaries until its forward
        ends (and may peak above the prediction).

    Raises
    ------
    FingerprintMismatchError
        The schedule was solved for another problem than the profile's chain.
    ApplyError
        A model already applied, a stage count that does not match, or a graph schedule with
        `blocks` or with a profile that has no graph.
    InvalidScheduleError
        A schedule the executor cannot replay (see `ReplayPlan.from_ops`).
    """
    # Long: the public entry's checks, each with its own error, then the hooks; the checks read one
    # another's results.
    from checkpoint_solver._args import expect_module, expect_schedule

    expect_module(model, "cs.apply")
    expect_schedule(schedule, "cs.apply")
    if profile is not None and not isinstance(profile, Profile):
        raise InvalidArgumentError(
            f"cs.apply's profile must be a Profile (cs.profile(model, inputs) or "
            f"cs.Profile.load(path)), got {type(profile).__name__}"
        )
    applied.refuse_compiled(model)
    applied.check_free(model)
    if schedule.kind == "graph":
        from checkpoint_solver.runtime import oplevel

        if blocks is not None:
            raise ApplyError(
                "blocks= names a chain's stages; a graph schedule is applied to the region it was "
                "solved for: cs.apply(model, schedule, profile) or cs.apply(module, schedule)"
            )
        if profile is not None:
            if profile.graph is None:
                raise ApplyError(
                    "a graph schedule was given with a profile that has no op graph (profiled "
                    "with graph=False, or tracing failed: see profile.measurement['graph_error'])"
                )
            _same_problem(schedule, profile.graph, "graph")
        return oplevel.apply_graph(model, schedule, record=record)
    input_bytes = None
    if profile is not None:
        _same_problem(schedule, profile.chain, "chain")
        prologue = profile.stages[0].kind is StageKind.PROLOGUE
        calls = profile_calls(model, profile.stages)
        input_bytes = profile.chain.x[0]
    else:
        named = resolve_blocks(model, blocks)
        calls = [StageCall(name, m) for name, m in named]
        nb = len(named)
        if schedule.size == nb + 2:
            prologue = True
        elif schedule.size == nb + 1:
            prologue = False
        else:
            raise ApplyError(
                f"the schedule has {schedule.size} stages but {type(model).__name__} has {nb} "
                f"blocks ({nb + 1} stages with the loss, {nb + 2} with a prologue); pass the "
                f"profile the schedule was solved from, or the blocks it was profiled with"
            )
    if not calls:
        raise ApplyError("the profile names no blocks; profile the model with its blocks")
    plan = ReplayPlan.from_ops(schedule.ops, schedule.size)
    ex = _Executor(model, plan, calls, prologue, input_bytes, record, probe)

    def undo() -> None:
        for h in ex.handles:
            h.remove()

    applied.attach(
        model,
        applied.Applied(
            "chain", ex, undo=undo, trace=lambda: list(ex.last_trace or []) if ex.record else None
        ),
    )
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo `apply` (of a chain or a graph schedule, or a baseline): the model trains as before.
    Returns `model`."""
    applied.detach(model)
    return model


def is_applied(model: nn.Module) -> bool:
    """Whether a schedule or a baseline is applied to `model`."""
    return applied.get(model) is not None


def last_trace(model: nn.Module) -> list[str]:
    """The ops the most recent step of an applied model ran (``apply(..., record=True)``), in the
    order they ran: forward ops as the stages started, reruns as they ran, ``B(k)`` as autograd
    reached stage k (graph schedules: their computes). Frees are not listed."""
    record = applied.get(model)
    trace = None if record is None else record.trace()
    if trace is None:
        raise ApplyError("record the trace with apply(model, schedule, record=True)")
    return [t for t in trace if not t.startswith("free")]
