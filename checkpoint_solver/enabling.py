"""One line for everyone: `enable` profiles, solves, applies, and says what it chose.

``cs.enable(model, example_inputs, budget="12GiB")`` is what a user who today calls
``gradient_checkpointing_enable()`` writes instead, at the same place: before the training loop,
before ``Trainer(model=...)`` or ``trainer.fit(...)``. It

1. profiles `model` on one real batch (`example_inputs`: a tensor, a tuple of arguments or the
   dict a Hugging Face model takes),
2. solves for `budget` (activations, or with `optimizer` the whole step),
3. applies the schedule, with our executor (``mode="executor"``: every schedule, multi-level
   recomputation included) or as torch's own checkpoint policies (``mode="policy"``: the
   nearest two-level schedule, which runs under ``torch.compile`` and FSDP2), and
4. caches the profile and the schedule as JSON under a key of everything they depend on (the
   model's structure and parameter shapes, the inputs' shapes, the budget, the mode, the torch
   version and the device), so that the next run with the same setup starts at once.

The cache folder is `cache_dir`, else ``$CHECKPOINT_SOLVER_CACHE``, else
``~/.cache/checkpoint_solver``; ``cache=False`` skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import checkpoint_solver as cs
from checkpoint_solver.errors import InfeasibleBudgetError, InvalidOptionError
from checkpoint_solver.problem.profile import Profile
from checkpoint_solver.schedule import FwdCheckpoint, FwdNoTape, Schedule
from checkpoint_solver.units import format_bytes, parse_bytes

__all__ = ["Enabled", "cache_key", "enable"]

MODES = ("executor", "policy")


@dataclass(frozen=True)
class Enabled:
    """What `enable` did.

    Attributes
    ----------
    schedule : Schedule
        The schedule solved (or loaded from the cache).
    profile : Profile
    policy : TorchPolicy | None
        With ``mode="policy"``, the exported policy applied.
    cached : bool
        Whether profile and schedule came from the cache.
    paths : tuple[Path, Path] | None
        The cached profile and schedule files (None without a cache).
    summary : str
        The line `enable` printed.
    """

    schedule: Schedule
    profile: Profile
    policy: Any
    cached: bool
    paths: tuple[Path, Path] | None
    summary: str


def _say(verbose: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if verbose:
            print(f"checkpoint_solver: {message}", file=sys.stderr, flush=True)

    return say


def _describe_tensors(tree: Any) -> Any:
    if isinstance(tree, torch.Tensor):
        return ["tensor", list(tree.shape), str(tree.dtype), tree.device.type, tree.requires_grad]
    if isinstance(tree, dict):
        return {
            str(k): _describe_tensors(v) for k, v in sorted(tree.items(), key=lambda kv: str(kv[0]))
        }
    if isinstance(tree, (list, tuple)):
        return [_describe_tensors(v) for v in tree]
    return repr(tree)


def cache_key(
    model: nn.Module, example_inputs: Any, budget: int, *, mode: str, solver: str, optimizer: Any
) -> str:
    """The cache key of one `enable` setup: a hash of the model's structure (its module tree as
    printed, parameter and buffer names, shapes, dtypes, devices and requires_grad), the inputs'
    shapes and dtypes (and non-tensor arguments), the budget, mode, solver, optimizer (class and
    hyperparameters), torch's version and ours. Weights' values are not in it: a schedule depends
    on shapes and times, not on values."""
    params = [
        [n, list(p.shape), str(p.dtype), p.device.type, p.requires_grad]
        for n, p in model.named_parameters()
    ]
    buffers = [[n, list(b.shape), str(b.dtype)] for n, b in model.named_buffers()]
    opt = None
    if optimizer is not None:
        opt = [type(optimizer).__qualname__, repr(sorted(optimizer.defaults.items()))]
    what = {
        "model": [type(model).__module__, type(model).__qualname__, repr(model)],
        "params": params,
        "buffers": buffers,
        "inputs": _describe_tensors(example_inputs),
        "budget": budget,
        "mode": mode,
        "solver": solver,
        "optimizer": opt,
        "torch": torch.__version__,
        "checkpoint_solver": cs.__version__,
        "training": model.training,
    }
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("CHECKPOINT_SOLVER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "checkpoint_solver"


def _solve(
    prof: Profile, budget: int, mode: str, solver: str | None, say: Callable[[str], None]
) -> Schedule:
    """The schedule for `budget`: on the chain (``dp`` by default) for the executor; for torch's
    policies, ``hierarchical`` on the op graph when there is one (it decides per op), else the
    chain's ``dp`` exported through the graph."""
    if mode == "policy" and prof.graph is not None and solver in (None, "hierarchical"):
        # Graph budgets leave the inputs out; the user's budget counts them.
        inputs = int(prof.measurement.get("input_bytes", 0))
        say(f"solving hierarchical for {format_bytes(budget)} on the op graph ...")
        return cs.solve(prof.graph, budget - inputs, "hierarchical")
    name = solver or "dp"
    say(f"solving {name} for {format_bytes(budget)} on the {prof.chain.length}-stage chain ...")
    return cs.solve(prof.chain, budget, name)


_POLICY_TRIES = 6


def _fitting_policy(
    model: nn.Module,
    example_inputs: Any,
    prof: Profile,
    budget: int,
    solver: str | None,
    say: Callable[[str], None],
) -> tuple[Schedule, Any]:
    """The schedule for `budget` whose torch policies (`checkpoint_solver.export`) are predicted
    within it, and those policies. The policies are the nearest two-level form of the schedule
    and can hold more than it does (a value the schedule frees early that a checkpoint region
    keeps to its end), so the schedule is solved again for less by the excess, a few times.

    Raises
    ------
    InfeasibleBudgetError
        No try's policies fit; its ``min_budget_bytes`` is the least predicted peak of those
        tried (a budget they fit)."""
    target, least = budget, None
    for _ in range(_POLICY_TRIES):
        try:
            sched = _solve(prof, target, "policy", solver, say)
        except InfeasibleBudgetError:
            if least is None:  # the budget itself: the solver's own error names its minimum
                raise
            break
        policy = cs.export_policy(model, sched, prof, example_inputs)
        if policy.peak_bytes <= budget:
            return sched, policy
        least = policy.peak_bytes if least is None else min(least, policy.peak_bytes)
        over = policy.peak_bytes - budget
        say(
            f"  torch's policies for it are predicted at {format_bytes(policy.peak_bytes)}, over "
            f"the budget by {format_bytes(over)}: solving for less"
        )
        target -= max(over, budget // 50)
    raise InfeasibleBudgetError(
        budget,
        least,
        sched.solver,  # a solve succeeded: a failing first one raised above
        hint="torch's checkpoint policies could not be fitted within it (the executor, "
        "mode='executor', replays a schedule exactly)",
    )


def enable(
    model: nn.Module,
    example_inputs: Any,
    budget: int | float | str,
    *,
    mode: str = "executor",
    solver: str | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    blocks: Any = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> Enabled:
    """Profile `model`, solve for `budget`, apply the schedule (in place) and print what it chose.

    Parameters
    ----------
    example_inputs
        One real batch, as the model is called in training (``model(*args)`` or
        ``model(**batch)``).
    budget
        Bytes or a string (``"12GiB"``): activations, or with `optimizer` the whole step
        (parameters, gradients, optimizer state included).
    mode : {"executor", "policy"}
        ``"executor"``: our executor replays the schedule (``cs.apply``). ``"policy"``: torch
        checkpoint regions with selective policies (`checkpoint_solver.export`), for
        ``torch.compile`` and FSDP2.
    solver
        Default ``dp`` on the chain (executor), ``hierarchical`` on the op graph (policy).
    optimizer
        Makes the budget the whole step's; measured by one real step in the profile (the
        model's parameters are restored after it).
    loss_fn, blocks
        As for `checkpoint_solver.profile`.
    cache, cache_dir
        Reuse (and write) the profile and schedule for this setup (`cache_key`).

    Raises
    ------
    InvalidOptionError
        An unknown mode.
    InfeasibleBudgetError
        The budget is below the least memory a schedule needs (the error names it).
    """
    if mode not in MODES:
        raise InvalidOptionError(f"mode={mode!r}; give one of {', '.join(map(repr, MODES))}")
    say = _say(verbose)
    budget_bytes = parse_bytes(budget)
    key = cache_key(
        model, example_inputs, budget_bytes, mode=mode, solver=solver or "", optimizer=optimizer
    )
    folder = _cache_dir(cache_dir)
    paths = (folder / f"{key}.profile.json", folder / f"{key}.schedule.json")
    cached = cache and all(p.is_file() for p in paths)
    name = type(model).__name__
    policy = None
    if cached:
        prof = Profile.load(paths[0])
        sched = Schedule.load(paths[1])
        say(f"{name}: schedule from the cache ({paths[1]})")
    else:
        say(f"profiling {name} on one batch ...")
        t0 = time.perf_counter()
        prof = cs.profile(
            model,
            example_inputs,
            loss_fn=loss_fn,
            blocks=blocks,
            optimizer=optimizer,
            graph=mode == "policy",
        )
        say(f"  {prof.chain.length} stages in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        if mode == "policy":
            sched, policy = _fitting_policy(model, example_inputs, prof, budget_bytes, solver, say)
        else:
            sched = _solve(prof, budget_bytes, mode, solver, say)
        say(f"  solved in {time.perf_counter() - t0:.1f} s")
        if cache:
            folder.mkdir(parents=True, exist_ok=True)
            prof.save(paths[0])
            sched.save(paths[1])
    if mode == "policy":
        if policy is None:  # from the cache
            policy = cs.export_policy(model, sched, prof, example_inputs)
        policy.apply(model)
        peak, time_ = policy.peak_bytes, policy.predicted.compute_time
        what = policy.describe().split(";")[0]
    else:
        cs.apply(model, sched, prof)
        peak, time_ = sched.predicted.peak_bytes, sched.predicted.compute_time
        rerun = {op.stage for op in sched.ops if isinstance(op, (FwdNoTape, FwdCheckpoint))}
        what = f"{len(rerun)} of {prof.chain.length} stages recomputed in the backward"
    # Each prediction against plain autograd's time on the same costs (graph or chain).
    base = (
        prof.graph.store_all_time
        if sched.kind == "graph" and prof.graph
        else prof.chain.store_all_time
    )
    overhead = (time_ / base - 1) * 100 if base else 0.0
    scope = "whole step" if sched.scope == "step" else "activations"
    summary = (
        f"{name}: {sched.solver} for {format_bytes(budget_bytes)} ({scope}): predicted peak "
        f"{format_bytes(peak)}, {overhead:+.1f} % step time; {what}"
    )
    say(summary)
    return Enabled(sched, prof, policy, cached, paths if cache else None, summary)
