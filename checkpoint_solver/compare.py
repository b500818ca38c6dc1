"""Side-by-side training runs: our schedules against what users do today, on one model, in one run.

`compare` profiles a model, solves at a few activation-memory budgets, applies each schedule to a
copy of the model and trains it a few steps next to plain autograd and torch's own checkpointing.
It is what ``checkpoint-solver demo`` and ``checkpoint-solver bench`` print.

For every method it reports the predicted activation peak (the simulator's, on the profiled chain or
the captured op graph), the measured one (the live-storage tracker of
`checkpoint_solver.runtime.measure`, which counts what the profiler counts: inputs, activations,
saved tensors, activation gradients, temporaries; on CUDA also ``max_memory_allocated`` above the
step's start), the median step time (forward, backward and an SGD step; steps run round-robin over
the methods so drift on a shared machine hits all alike) and whether every step's loss and the
first step's gradients are bitwise equal to plain autograd's (dropout seeded identically).

Budgets are fractions of the store-all activation peak (plain autograd's), plus the peak of torch's
per-block checkpointing (``"= torch per-block"``: its measured peak, or its simulated one when larger, so
that both are solved in the same accounting), where "at equal memory" is decided.

Example::

    from checkpoint_solver import models
    from checkpoint_solver.compare import compare

    model, inputs = models.gpt(layers=4)
    result = compare(model, inputs, fractions=(0.5,), steps=2)
    print(result.table())
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

import checkpoint_solver as cs
from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.profiling.chain import inputs_to
from checkpoint_solver.profiling.inputs import model_device
from checkpoint_solver.profiling.stages import resolve_blocks
from checkpoint_solver.runtime import baselines
from checkpoint_solver.runtime.measure import measure_step, train_step
from checkpoint_solver.solvers.baseline_plans import (
    profile_blocks,
    torch_per_block,
    torch_sequential,
)
from checkpoint_solver.units import format_bytes

__all__ = ["CHAIN_SOLVERS", "GRAPH_SOLVERS", "Comparison", "Row", "compare"]

CHAIN_SOLVERS = ("dp", "revolve", "sqrt", "uniform")
GRAPH_SOLVERS = ("hierarchical", "greedy")
_SOLVER_OPTIONS: dict[str, dict[str, Any]] = {"dp": {"mem_slots": 5000}}


@dataclass
class Row:
    """One method's measured training run."""

    method: str
    budget: str = "-"
    budget_bytes: int | None = None
    predicted_peak_bytes: int | None = None
    predicted_overhead: float | None = None
    measured_peak_bytes: int | None = None
    cuda_peak_bytes: int | None = None
    step_seconds: float | None = None
    step_times: list[float] = field(default_factory=list)
    vs_plain: float | None = None
    vs_per_block: float | None = None
    exact: bool | None = None
    solve_seconds: float | None = None
    error: str | None = None


@dataclass
class Comparison:
    """What `compare` measured; `table` prints it, `to_dict` is its JSON form."""

    model: str
    device: str
    device_name: str
    stages: int
    store_all_peak_bytes: int
    min_budget_bytes: int
    profile_seconds: float
    steps: int
    rows: list[Row]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, method: str, budget: str = "-") -> Row:
        """The row of `method` at `budget` (its label, e.g. ``"50%"``)."""
        for r in self.rows:
            if r.method == method and r.budget == budget:
                return r
        raise KeyError((method, budget))

    def table(self) -> str:
        from checkpoint_solver._text import table

        cuda = any(r.cuda_peak_bytes is not None for r in self.rows)
        headers = ["method", "budget", "predicted peak", "measured peak"]
        headers += ["CUDA peak"] if cuda else []
        headers += ["step", "vs none", "vs per-block", "predicted", "gradients / note"]
        body = []
        for r in self.rows:
            budget = r.budget if r.budget_bytes is None else f"{r.budget} {_b(r.budget_bytes)}"
            if r.error:
                body.append([r.method, budget] + ["-"] * (len(headers) - 3) + [r.error])
                continue
            line = [r.method, budget, _b(r.predicted_peak_bytes), _b(r.measured_peak_bytes)]
            line += [_b(r.cuda_peak_bytes)] if cuda else []
            line += [
                f"{r.step_seconds * 1e3:.0f} ms" if r.step_seconds else "-",
                _pct(r.vs_plain),
                _pct(r.vs_per_block),
                _pct(r.predicted_overhead),
                "bitwise equal" if r.exact else "DIFFER",
            ]
            body.append(line)
        return table(headers, body)

    def summary(self) -> list[str]:
        """A few sentences: prediction accuracy, equal-memory comparison, gradients."""
        done = [r for r in self.rows if not r.error and r.predicted_peak_bytes]
        lines = []
        if done:
            worst = max(done, key=lambda r: r.measured_peak_bytes / r.predicted_peak_bytes)  # type: ignore[operator]
            lines.append(
                f"measured/predicted peak: at most {worst.measured_peak_bytes / worst.predicted_peak_bytes:.3f} "  # type: ignore[operator]
                f"({worst.method} @ {worst.budget})"
            )
        at_pb = [r for r in self.rows if r.budget == "= torch per-block" and not r.error]
        if at_pb:
            best = min(at_pb, key=lambda r: r.step_seconds or math.inf)
            lines.append(
                f"at torch per-block's peak ({_b(best.budget_bytes)}): {best.method} steps {_pct(best.vs_per_block)} "
                f"vs per-block (predicted {_pct(best.predicted_overhead)} vs no checkpointing)"
            )
        trained = [r for r in self.rows if not r.error]
        lines.append(
            f"losses and gradients bitwise equal to plain autograd: "
            f"{sum(bool(r.exact) for r in trained)}/{len(trained)} methods"
        )
        return lines


def _b(n: int | None) -> str:
    return "-" if n is None else format_bytes(n)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


@dataclass
class _Run:
    row: Row
    model: nn.Module
    opt: torch.optim.Optimizer
    losses: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor | None] = field(default_factory=list)


def compare(
    model: nn.Module,
    inputs: Any,
    *,
    fractions: Sequence[float] = (0.3, 0.5, 0.75),
    solvers: Sequence[str] = ("dp", "hierarchical"),
    steps: int = 3,
    blocks: Sequence[nn.Module | str] | str | None = None,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    device: str | torch.device | None = None,
    at_per_block_peak: bool = True,
    sequential: bool = True,
    alternatives: Mapping[str, Callable[[nn.Module], nn.Module]] | None = None,
    match: Sequence[str] = (),
    lr: float = 1e-3,
    description: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Profile, solve, apply and train `model` side by side with plain autograd and torch's
    checkpointing; see the module docstring.

    Parameters
    ----------
    fractions
        Activation budgets as fractions of the store-all peak (0.5 = half of plain autograd's).
    solvers
        Chain solvers (`CHAIN_SOLVERS`, applied per block) and op-level graph solvers
        (`GRAPH_SOLVERS`, applied to the captured joint graph of the whole model).
    steps
        Timed training steps per method (after one warm-up step and one measured step).
    alternatives
        More methods to run next to torch's: label -> a function that wraps a copy of the model
        (e.g. ``torch.compile`` with an activation memory budget). The wrapped module must have
        the model's parameters in the same order.
    match
        Labels of methods (torch's or `alternatives`) at whose peak `solvers` also solve
        (``"= LABEL"`` rows): their measured peak, or the simulated one when larger. With
        `at_per_block_peak`, torch per-block is matched too.
    """
    # Long: the comparison's rows built in one place: every alternative's schedule, application,
    # timing and exactness check reads the same profile, budgets and reference run.
    say = progress or (lambda _msg: None)
    unknown = [s for s in solvers if s not in CHAIN_SOLVERS + GRAPH_SOLVERS]
    if unknown:
        raise cs.UnknownSolverError(
            f"compare() runs {', '.join(CHAIN_SOLVERS + GRAPH_SOLVERS)}; not {', '.join(unknown)}"
        )
    if steps < 1:
        raise cs.InvalidOptionError(f"steps={steps}; give at least 1")
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise cs.InvalidOptionError(f"fractions {bad} are not in (0, 1]; e.g. 0.5 = half")
    dev = torch.device(device) if device is not None else model_device(model)
    model = model.to(dev)
    inputs = inputs_to(inputs, dev)
    # By name from here on: every method works on its own copy of the model.
    if blocks is not None:
        blocks = [n for n, _ in resolve_blocks(model, blocks)]

    say(f"profiling {description or type(model).__name__} on {dev} ...")
    t0 = time.perf_counter()
    op_level = any(s in GRAPH_SOLVERS for s in solvers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed graph capture is reported below
        prof = cs.profile(
            copy.deepcopy(model), inputs, loss_fn=loss_fn, blocks=blocks, graph=op_level
        )
    profile_s = time.perf_counter() - t0
    chain = prof.chain
    first, count = profile_blocks([s.name for s in prof.stages])
    # The stages' modules (found from the call tree unless given): what torch's rules wrap too.
    block_names = list(dict.fromkeys(m for st in prof.stages for m in st.modules))
    blocks = block_names
    repeated = len(block_names) < count  # a module called more than once (an RNN cell)
    high = cs.min_budget(chain, "store_all")  # the store-all schedule's peak
    low = cs.min_budget(chain, "dp")
    say(
        f"  {chain.length} stages in {profile_s:.1f} s; store-all activation peak {_b(high)}, "
        f"smallest chain budget {_b(low)}"
    )

    graph = prof.graph
    input_bytes = int(prof.measurement["input_bytes"])
    if op_level:
        if graph is None:
            say(f"  op-level capture failed: {prof.measurement.get('graph_error')}")
        else:
            say(f"  op graph (the whole model, its stages as blocks): {graph.size} nodes")

    rows: list[Row] = []
    runs: list[_Run] = []

    def add(row: Row, wrap: Callable[[nn.Module], nn.Module]) -> _Run:
        m = wrap(copy.deepcopy(model))
        rows.append(row)
        runs.append(_Run(row, m, torch.optim.SGD(m.parameters(), lr=lr)))
        return runs[-1]

    reference = add(
        Row("no checkpointing", predicted_peak_bytes=high, predicted_overhead=0.0),
        baselines.no_checkpoint,
    )
    per_block: _Run | None = None
    if count:
        sim = torch_per_block(chain, first, count)
        per_block = add(
            Row(
                "torch per-block",
                predicted_peak_bytes=sim.predicted.peak_bytes,
                predicted_overhead=sim.predicted.overhead,
            ),
            lambda m: baselines.checkpoint_per_block(m, blocks),
        )
    if sequential and repeated:
        say("  torch checkpoint_sequential skipped: a block module is called more than once")
    if sequential and count >= 2 and not repeated:
        segments = max(2, round(math.sqrt(count)))
        seq = torch_sequential(chain, segments, first, count)
        add(
            Row(
                f"torch checkpoint_sequential ({segments} segments)",
                predicted_peak_bytes=seq.predicted.peak_bytes,
                predicted_overhead=seq.predicted.overhead,
            ),
            lambda m: baselines.checkpoint_sequential(m, segments, blocks),
        )

    for label, wrap_alt in (alternatives or {}).items():
        add(Row(label), wrap_alt)

    def ours(solver: str, label: str, budget: int) -> _Run | None:
        row = Row(solver, budget=label, budget_bytes=budget)
        t0 = time.perf_counter()
        wrap: Callable[[nn.Module], nn.Module]
        try:
            if solver in GRAPH_SOLVERS:
                if graph is None:
                    row.error = "no op-level graph (capture failed)"
                    rows.append(row)
                    return None
                graph_sched = cs.solve(graph, budget - input_bytes, solver)
                row.predicted_peak_bytes = graph_sched.predicted.peak_bytes + input_bytes
                row.predicted_overhead = graph_sched.predicted.overhead
                wrap = lambda m: cs.apply(m, graph_sched, prof)  # noqa: E731
            else:
                chain_sched = cs.solve(chain, budget, solver, **_SOLVER_OPTIONS.get(solver, {}))
                row.predicted_peak_bytes = chain_sched.predicted.peak_bytes
                row.predicted_overhead = chain_sched.predicted.overhead
                wrap = lambda m: cs.apply(m, chain_sched, prof)  # noqa: E731
        except InfeasibleBudgetError as exc:
            least = exc.min_budget_bytes
            if least is not None and solver in GRAPH_SOLVERS:
                least += input_bytes
            row.error = "infeasible" + (f" (needs at least {_b(least)})" if least else "")
            rows.append(row)
            return None
        row.solve_seconds = time.perf_counter() - t0
        return add(row, wrap)

    budgets = [(f"{f:.0%}", int(high * f)) for f in fractions]
    if budgets:
        say(f"solving at {', '.join(label for label, _ in budgets)} of the store-all peak ...")
    for label, budget in budgets:
        for s in solvers:
            ours(s, label, budget)

    say(f"training {len(runs)} methods: warm-up and measured step ...")
    for run in runs:
        _first_steps(run, inputs, loss_fn)
    targets = list(match)
    if at_per_block_peak and per_block is not None and per_block.row.method not in targets:
        targets.insert(0, per_block.row.method)
    by_label = {r.row.method: r for r in runs}
    for label in targets:
        if label not in by_label:
            raise cs.InvalidOptionError(f"match: no method {label!r}; methods: {list(by_label)}")
        other = by_label[label].row
        # Both accountings: the measured peak, or the simulated one when larger (the model's own
        # measure, in which ours are solved and predicted).
        peak = max(other.measured_peak_bytes or 0, other.predicted_peak_bytes or 0)
        say(f"solving at {label}'s peak ({_b(peak)}) ...")
        for s in solvers:
            extra = ours(s, f"= {label}", peak)
            if extra is not None:
                _first_steps(extra, inputs, loss_fn)

    for k in range(1, steps + 1):
        say(f"timed step {k}/{steps} of {len(runs)} methods ...")
        for run in runs:
            _timed(run, inputs, loss_fn, seed=k)
    base = statistics.median(reference.row.step_times)
    pb_time = statistics.median(per_block.row.step_times) if per_block else None
    for run in runs:
        r = run.row
        r.step_seconds = statistics.median(r.step_times)
        r.vs_plain = r.step_seconds / base - 1
        r.vs_per_block = r.step_seconds / pb_time - 1 if pb_time else None
        r.exact = _same(run.grads, reference.grads) and _same(run.losses, reference.losses)
    return Comparison(
        model=description or type(model).__name__,
        device=str(dev),
        device_name=str(prof.source.get("device_name", "")),
        stages=chain.length,
        store_all_peak_bytes=high,
        min_budget_bytes=low,
        profile_seconds=profile_s,
        steps=steps,
        rows=rows,
    )


def _same(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor | None]) -> bool:
    return len(a) == len(b) and all(
        (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
        for x, y in zip(a, b, strict=True)
    )


def _zero(model: nn.Module) -> None:
    for p in model.parameters():
        p.grad = None


def _first_steps(run: _Run, inputs: Any, loss_fn: Callable[[Any], torch.Tensor] | None) -> None:
    """An untimed warm-up step without an update (an op-level schedule captures its graph
    here), then the step whose activation peak is measured and whose gradients are compared."""
    _zero(run.model)
    torch.manual_seed(1234)
    train_step(run.model, inputs, loss_fn)
    _zero(run.model)
    torch.manual_seed(0)
    got = measure_step(run.model, inputs, loss_fn)
    run.row.measured_peak_bytes = got.peak_bytes
    run.row.cuda_peak_bytes = got.cuda_peak_bytes
    run.losses.append(got.loss)
    run.grads = [None if p.grad is None else p.grad.clone() for p in run.model.parameters()]
    run.opt.step()
    _zero(run.model)


def _timed(
    run: _Run, inputs: Any, loss_fn: Callable[[Any], torch.Tensor] | None, seed: int
) -> None:
    cuda = run.row.cuda_peak_bytes is not None
    torch.manual_seed(seed)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = train_step(run.model, inputs, loss_fn)
    run.opt.step()
    if cuda:
        torch.cuda.synchronize()
    run.row.step_times.append(time.perf_counter() - t0)
    run.losses.append(out)
    _zero(run.model)
