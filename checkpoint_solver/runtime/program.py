"""What a chain stage computes, recorded as it runs, so the executor can run it again.

A stage is one call of a block module plus the code that runs after it, up to the next stage's call
(glue: residual adds, a concatenation with a skip, a downsampling layer that is no block); the
prologue is the code before the first stage. Module calls are rerun by calling the module; glue
and the prologue are recorded while the forward runs, call by call, by a `TorchFunctionMode`
(each torch function, tensor method and operator with what it read and made), and rerun by
calling the same functions again: the same kernels, so the same values, bit for bit.

# NOTE [Values and handles]
Every tensor a stage can read from another one gets a *handle* (an int, numbered in creation
order, so the same forward numbers them the same every step): the model's inputs, every output of
a stage's block call, every tensor a glue call returns. What stage ``s`` reads from earlier stages
(its block's arguments and its glue's inputs) is ``reads(s)``; the boundary ``a[j]`` the executor
keeps for a rerun is every value made at or before stage ``j`` that a later rerun reads
(`needed`). Parameters, buffers and non-tensor arguments are constants of the program. A tensor
the recorder never saw made (made by code no torch function runs, e.g. a tensor kept on a module
by an earlier step) is a constant too, held for the step.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

from checkpoint_solver.errors import ReplayError

__all__ = ["Arg", "Boundary", "Program", "Recorder", "Values", "needed_sets"]

Arg = tuple[str, Any]  # ("h", handle) or ("c", constant)


def detach(t: Any) -> Any:
    """`t` detached (same storage), still requiring grad when it did: a fresh leaf for a rerun."""
    if not isinstance(t, torch.Tensor):
        return t
    d = t.detach()
    if t.requires_grad:
        d.requires_grad_(True)
    return d


class Boundary(dict[int, torch.Tensor]):
    """A kept boundary: handles to detached tensors, with each tensor's version when kept (a
    value written in place after it was kept would make a rerun read the later value)."""

    def __init__(self, values: dict[int, torch.Tensor]) -> None:
        super().__init__(values)
        self.versions = {h: t._version for h, t in values.items()}

    def check(self, stage: int) -> None:
        for h, t in self.items():
            if t._version != self.versions.get(h, t._version):
                raise ReplayError(
                    f"a value stage {stage} reads from its kept boundary was written in place "
                    f"after it was kept (e.g. `x += y` on a tensor a later stage still reads); "
                    f"write it out of place (`x = x + y`)"
                )


class Values:
    """The handles of one forward: which tensor object each is (weakly), and its stage."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}
        self.refs: dict[int, weakref.ref[torch.Tensor]] = {}
        self.producer: dict[int, int] = {}

    def add(self, t: torch.Tensor, stage: int) -> int:
        h = len(self.producer)
        ref = weakref.ref(t)
        self._by_id[id(t)] = (ref, h)
        self.refs[h] = ref
        self.producer[h] = stage
        return h

    def handle(self, t: torch.Tensor) -> int | None:
        entry = self._by_id.get(id(t))
        if entry is None or entry[0]() is not t:
            return None
        return entry[1]

    def arg(self, v: Any) -> Arg:
        if isinstance(v, torch.Tensor) and (h := self.handle(v)) is not None:
            return ("h", h)
        return ("c", v)

    def env(self, handles: Iterable[int], *, missing: str) -> Boundary:
        """The live tensors of `handles`, detached; a dead one raises with `missing`."""
        out = {}
        for h in handles:
            ref = self.refs.get(h)
            t = ref() if ref is not None else None
            if t is None:
                raise ReplayError(missing)
            out[h] = detach(t)
        return Boundary(out)

    def live(self, up_to: int) -> Boundary:
        """Every live value made at or before stage `up_to`, detached."""
        out = {}
        for h, stage in self.producer.items():
            if stage <= up_to and (t := self.refs[h]()) is not None:
                out[h] = detach(t)
        return Boundary(out)


def _value(env: dict[int, Any], a: Arg, stage: int) -> Any:
    kind, v = a
    if kind == "c":
        return v
    try:
        return env[v]
    except KeyError:
        raise ReplayError(
            f"stage {stage} reads a value that the kept boundary does not hold; the model's "
            f"forward made other calls than in the step before (apply the schedule again after "
            f"changing the model)"
        ) from None


@dataclass
class _Call:
    """One recorded torch call of glue or the prologue."""

    func: Any
    spec: Any
    args: list[Arg]
    outs: list[int | None]
    grad: bool
    autocast: tuple[tuple[str, bool, torch.dtype], ...]

    def run(self, env: dict[int, Any], stage: int) -> None:
        args, kwargs = tree_unflatten([_value(env, a, stage) for a in self.args], self.spec)
        with torch.set_grad_enabled(self.grad), _autocast(self.autocast):
            out = self.func(*args, **kwargs)
        del args, kwargs
        env.update(
            {h: t for t, h in zip(tree_flatten(out)[0], self.outs, strict=True) if h is not None}
        )


class _autocast:
    """Enter the recorded autocast state where it differs from the current one."""

    def __init__(self, state: tuple[tuple[str, bool, torch.dtype], ...]) -> None:
        self.state = state
        self.entered: list[Any] = []

    def __enter__(self) -> None:
        for dt, enabled, dtype in self.state:
            if torch.is_autocast_enabled(dt) != enabled or (
                enabled and torch.get_autocast_dtype(dt) != dtype
            ):
                ctx = torch.autocast(dt, dtype=dtype, enabled=enabled)
                ctx.__enter__()
                self.entered.append(ctx)

    def __exit__(self, *exc: Any) -> None:
        for ctx in reversed(self.entered):
            ctx.__exit__(None, None, None)
        self.entered.clear()


def autocast_state(device_type: str) -> tuple[tuple[str, bool, torch.dtype], ...]:
    return tuple(
        (dt, torch.is_autocast_enabled(dt), torch.get_autocast_dtype(dt))
        for dt in dict.fromkeys(("cpu", device_type))
    )


@dataclass
class Program:
    """What stage `stage` ran in this forward: its block call (module, argument leaves, their
    spec, the handles of its output leaves) and its glue calls; the prologue has no block."""

    stage: int
    module: torch.nn.Module | None = None
    spec: Any = None
    args: list[Arg] = field(default_factory=list)
    outs: list[int | None] = field(default_factory=list)
    calls: list[_Call] = field(default_factory=list)

    def reads(self, producer: dict[int, int]) -> set[int]:
        """Handles made by earlier stages that this stage reads."""
        args = list(self.args)
        for c in self.calls:
            args.extend(c.args)
        return {v for kind, v in args if kind == "h" and producer[v] < self.stage}

    def run(self, env: dict[int, Any], keep: Collection[int] = ()) -> None:
        """Run the stage again on the values in `env` (handles to tensors), adding what it makes.
        A value leaves `env` after the last call that reads it unless it is in `keep`, so a rerun
        frees what it is done with as the model's own forward does."""
        steps = ([self.args] if self.module is not None else []) + [c.args for c in self.calls]
        last: dict[int, int] = {}
        for i, args in enumerate(steps):
            for kind, v in args:
                if kind == "h":
                    last[v] = i

        def done_with(i: int) -> None:
            for h in [h for h in env if last.get(h, -1) <= i and h not in keep]:
                del env[h]

        done_with(-1)
        i = 0
        if self.module is not None:
            args, kwargs = tree_unflatten(
                [_value(env, a, self.stage) for a in self.args], self.spec
            )
            output = self.module(*args, **kwargs)
            del args, kwargs
            leaves = tree_flatten(output)[0]
            del output
            env.update({h: t for t, h in zip(leaves, self.outs, strict=True) if h is not None})
            del leaves
            done_with(i)
            i += 1
        for c in self.calls:
            c.run(env, self.stage)
            done_with(i)
            i += 1


def needed_sets(
    programs: dict[int, Program], producer: dict[int, int], replayed: Iterable[int], n: int
) -> dict[int, frozenset[int]]:
    """``needed[j]``: the values made at or before stage j that a rerun of a later stage reads
    (stages 1..n; j in 0..n-1)."""
    replayed = set(replayed)
    acc: set[int] = set()
    needed: dict[int, frozenset[int]] = {}
    for j in range(n - 1, -1, -1):
        s = j + 1
        if s in replayed and s in programs:
            acc |= programs[s].reads(producer)
        needed[j] = frozenset(h for h in acc if producer[h] <= j)
    return needed


def _mutates(func: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a call may write a tensor it was given: ``t[i] = v``, in-place methods (``add_``),
    ``out=`` arguments. Recorded even when it returns no tensor, so the rerun writes too."""
    name = getattr(func, "__name__", "")
    return (
        name in ("__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__")
        or (name.endswith("_") and not name.endswith("__"))
        or "out" in kwargs
    )


class Recorder(TorchFunctionMode):
    """Records each torch call that returns a tensor into `program`, registering its outputs."""

    def __init__(self, values: Values, program: Program, device_type: str) -> None:
        super().__init__()
        self.values, self.program, self.device_type = values, program, device_type

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        out_leaves = tree_flatten(out)[0]
        if any(isinstance(t, torch.Tensor) for t in out_leaves) or _mutates(func, kwargs):
            leaves, spec = tree_flatten((tuple(args), kwargs))
            program = self.program
            call_args = [self.values.arg(v) for v in leaves]
            outs = [
                self.values.add(t, program.stage) if isinstance(t, torch.Tensor) else None
                for t in out_leaves
            ]
            program.calls.append(
                _Call(
                    func,
                    spec,
                    call_args,
                    outs,
                    torch.is_grad_enabled(),
                    autocast_state(self.device_type),
                )
            )
        return out
