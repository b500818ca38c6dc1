"""checkpoint_solver: optimal activation-recomputation schedules for PyTorch training.

Profile a model into a problem (`Chain` or `Graph`), `solve` it for a memory budget, save the
`Schedule` as JSON, check it with `simulate`, and replay it at training time. Importing this
package never imports torch.

Examples
--------
>>> import checkpoint_solver as cs
>>> chain = cs.load_problem("example:transformer-chain")
>>> sched = cs.solve(chain, "12GiB", "uniform")
>>> cs.simulate(chain, sched).valid
True
"""

from __future__ import annotations

from typing import Any

from checkpoint_solver import runtime
from checkpoint_solver.errors import (
    ApplyError,
    CheckpointSolverError,
    FileFormatError,
    FingerprintMismatchError,
    InfeasibleBudgetError,
    InvalidArgumentError,
    InvalidBudgetError,
    InvalidOptionError,
    InvalidProblemError,
    InvalidScheduleError,
    ProfilingError,
    ReplayError,
    ScheduleFormatError,
    SolverUnavailableError,
    UnknownOptionError,
    UnknownSolverError,
)
from checkpoint_solver.problem import (
    Chain,
    Graph,
    Problem,
    fingerprint,
    load_problem,
    problem_from_dict,
    problem_to_dict,
    save_problem,
)
from checkpoint_solver.problem.profile import Profile
from checkpoint_solver.schedule import (
    HostLink,
    Prediction,
    Schedule,
    Status,
    load_schedule,
    save_schedule,
)
from checkpoint_solver.simulation import SimulationReport, Violation, check, simulate
from checkpoint_solver.solvers import (
    TradeoffPoint,
    available_solvers,
    min_budget,
    solve,
    tradeoff,
)
from checkpoint_solver.solvers.pipeline import PipelinePlan, solve_pipeline
from checkpoint_solver.units import format_bytes, format_seconds, parse_bytes

__version__ = "0.1.0"

__all__ = [
    "ApplyError",
    "Chain",
    "CheckpointSolverError",
    "FileFormatError",
    "FingerprintMismatchError",
    "Graph",
    "HostLink",
    "InfeasibleBudgetError",
    "InvalidArgumentError",
    "InvalidBudgetError",
    "InvalidOptionError",
    "InvalidProblemError",
    "InvalidScheduleError",
    "PipelinePlan",
    "Prediction",
    "Problem",
    "ProfilingError",
    "ReplayError",
    "Schedule",
    "ScheduleFormatError",
    "SimulationReport",
    "SolverUnavailableError",
    "Status",
    "TradeoffPoint",
    "UnknownOptionError",
    "UnknownSolverError",
    "Violation",
    "__version__",
    "apply",
    "available_solvers",
    "capture_region",
    "check",
    "enable",
    "export_policy",
    "fingerprint",
    "format_bytes",
    "format_seconds",
    "load_problem",
    "load_schedule",
    "measure_link",
    "measure_step",
    "min_budget",
    "parse_bytes",
    "problem_from_dict",
    "problem_to_dict",
    "profile",
    "runtime",
    "save_problem",
    "save_schedule",
    "simulate",
    "solve",
    "solve_pipeline",
    "tradeoff",
]


def profile(
    model: Any,
    example_inputs: Any,
    *,
    device: Any = None,
    loss_fn: Any = None,
    blocks: Any = None,
    warmup: int = 2,
    repeats: int = 5,
    graph: bool = True,
    optimizer: Any = None,
    accumulate: bool = False,
) -> Profile:
    """Profile a torch model into a chain (and its op graph): `Profile`.

    Imports torch when called. The parameters are those of
    `checkpoint_solver.profiling.chain.profile`, which documents them: `model` (a
    ``torch.nn.Module``), `example_inputs` (a tensor, a tuple of arguments or a dict of keyword
    arguments: one real batch), `device`, `loss_fn` (output -> scalar loss; default: the output
    itself, ``output.loss`` or the first element), `blocks` (the repeated modules that become
    stages; default: found), `warmup`/`repeats` (timed steps), `graph` (also capture the op
    graph), `optimizer` and `accumulate` (record the model states for whole-step budgets).
    """
    from checkpoint_solver.profiling.chain import profile as _profile

    return _profile(
        model,
        example_inputs,
        device=device,
        loss_fn=loss_fn,
        blocks=blocks,
        warmup=warmup,
        repeats=repeats,
        graph=graph,
        optimizer=optimizer,
        accumulate=accumulate,
    )


def apply(
    model: Any,
    schedule: Schedule,
    profile: Profile | None = None,
    *,
    blocks: Any = None,
    record: bool = False,
    probe: bool = True,
) -> Any:
    """Make a torch model train under `schedule` (a chain or a graph schedule); returns `model`,
    hooked in place (`checkpoint_solver.runtime.remove` undoes it).

    Imports torch when called. The parameters are those of
    `checkpoint_solver.runtime.executor.apply`, which documents them: `profile` (the profile the
    schedule was solved from), `blocks` (without a profile), `record` (keep each step's ops),
    `probe` (learn what the first step's boundaries hold before it).
    """
    from checkpoint_solver.runtime.executor import apply as _apply

    return _apply(model, schedule, profile, blocks=blocks, record=record, probe=probe)


def capture_region(
    module: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    blocks: Any = (),
    stages: Any = None,
    repeats: int = 3,
    name: str | None = None,
) -> Any:
    """Capture `module`'s joint forward and backward graph for these inputs as a `Region`, whose
    ``.graph`` is the `Graph` the graph solvers take (`cs.apply` replays their schedules on it).

    Imports torch when called. The parameters are those of
    `checkpoint_solver.profiling.region.capture_region`, which documents them: `blocks` (modules
    whose calls become the graph's blocks, for ``hierarchical``), `stages` (the profiler's stage
    calls instead), `repeats` (timed runs per op), `name`.
    """
    from checkpoint_solver.profiling.region import capture_region as _capture

    return _capture(module, args, kwargs, blocks=blocks, stages=stages, repeats=repeats, name=name)


def measure_step(
    model: Any,
    inputs: Any,
    loss_fn: Any = None,
    *,
    optimizer: Any = None,
    accumulate: bool = False,
) -> Any:
    """Run one training step of `model` under the live-storage tracker and report its activation
    peak (and, with `optimizer`, the whole step's), counted as the simulator counts them: how a
    schedule's prediction is checked.

    Imports torch when called. The parameters are those of
    `checkpoint_solver.runtime.measure.measure_step`, which documents them.
    """
    from checkpoint_solver.runtime.measure import measure_step as _measure

    return _measure(model, inputs, loss_fn, optimizer=optimizer, accumulate=accumulate)


def measure_link(
    device: Any = "cuda",
    *,
    nbytes: int | str = "64MiB",
    repeats: int = 5,
    host_budget: int | str | None = None,
) -> HostLink:
    """Measure the device-host link with pinned buffers on a side stream, each way: the
    `HostLink` for ``dp-offload`` (CUDA only; elsewhere give ``HostLink.gbps(...)``).

    Imports torch when called. The parameters are those of
    `checkpoint_solver.profiling.link.measure_link`, which documents them.
    """
    from checkpoint_solver.profiling.link import measure_link as _measure_link

    return _measure_link(device, nbytes=nbytes, repeats=repeats, host_budget=host_budget)


def export_policy(model: Any, schedule: Schedule, profile: Profile, example_inputs: Any) -> Any:
    """Export `schedule` as torch's own checkpointing: per block, a ``torch.utils.checkpoint``
    region or none, and inside a region, per op, saved or recomputed (a selective policy). Returns
    a `TorchPolicy`: ``.apply(model)`` wraps the blocks (then train in eager, under
    ``torch.compile`` or FSDP2, without our executor), ``.predicted`` (eager) and
    ``.predicted_compiled`` are its peak and time, ``.describe()`` what it costs against the
    schedule.

    Imports torch when called. The parameters are those of
    `checkpoint_solver.export.export_policy`, which documents them.
    """
    from checkpoint_solver.export import export_policy as _export

    return _export(model, schedule, profile, example_inputs)


def enable(
    model: Any,
    example_inputs: Any,
    budget: int | float | str,
    *,
    mode: str = "executor",
    solver: str | None = None,
    optimizer: Any = None,
    loss_fn: Any = None,
    blocks: Any = None,
    cache: bool = True,
    cache_dir: Any = None,
    verbose: bool = True,
) -> Any:
    """One line: profile `model` on `example_inputs`, solve for `budget`, apply the schedule in
    place (``mode="executor"``: our executor; ``"policy"``: torch's own checkpoint policies, for
    ``torch.compile`` and FSDP2), cache profile and schedule as JSON for the next run, and print
    what was chosen. Returns an `Enabled` record.

    Imports torch when called. The parameters are those of
    `checkpoint_solver.enabling.enable`, which documents them.
    """
    from checkpoint_solver.enabling import enable as _enable

    return _enable(
        model,
        example_inputs,
        budget,
        mode=mode,
        solver=solver,
        optimizer=optimizer,
        loss_fn=loss_fn,
        blocks=blocks,
        cache=cache,
        cache_dir=cache_dir,
        verbose=verbose,
    )
