"""Solvers: pure functions ``(problem, budget_bytes, **options) -> Schedule``, chosen by name.

Examples
--------
>>> from checkpoint_solver.problem.synthetic import uniform_chain
>>> chain = uniform_chain(9, x=10)
>>> s = solve(chain, "1KiB", solver="sqrt")
>>> s.solver, s.options["segments"], s.predicted.overhead
('sqrt', 3, 0.333...)
>>> min_budget(chain, solver="store_all")  # a[0] + 9 tapes + delta[9] + delta[8]
120
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from checkpoint_solver._args import expect_problem
from checkpoint_solver.errors import (
    CheckpointSolverError,
    InfeasibleBudgetError,
    InvalidBudgetError,
)
from checkpoint_solver.problem import Chain, Graph, Problem, fingerprint
from checkpoint_solver.problem.states import Scope, resolve_scope, step_floor, whole_step_chain
from checkpoint_solver.schedule import Schedule
from checkpoint_solver.simulation import simulate
from checkpoint_solver.solvers import (
    _values,
    auto,
    cpsat,
    dp,
    graph_greedy,
    hierarchical,
    ilp,
    ilp_offload,
    ilp_rounding,
    offload,
    periodic,
    revolve,
    store_all,
)
from checkpoint_solver.solvers._options import int_option
from checkpoint_solver.solvers._registry import REGISTRY, SolverSpec, get_spec, register
from checkpoint_solver.solvers._step import graph_step_min_budget, graph_step_solve
from checkpoint_solver.units import format_bytes, parse_bytes

__all__ = [
    "SolverSpec",
    "TradeoffPoint",
    "available_solvers",
    "min_budget",
    "solve",
    "tradeoff",
]

register(
    SolverSpec(
        name="store_all",
        kinds=("chain", "graph"),
        fn=store_all.solve_store_all,
        options_type=store_all.StoreAllOptions,
        min_budget=store_all.min_budget_store_all,
        guarantee="no recomputation: optimal time, the memory reference",
    )
)
register(
    SolverSpec(
        name="uniform",
        kinds=("chain",),
        fn=periodic.solve_uniform,
        options_type=periodic.UniformOptions,
        min_budget=periodic.min_budget_uniform,
        guarantee="checkpoint_sequential segments (the fastest segment count that fits)",
    )
)
register(
    SolverSpec(
        name="sqrt",
        kinds=("chain",),
        fn=periodic.solve_sqrt,
        min_budget=periodic.min_budget_sqrt,
        guarantee="Chen et al. 2016 sqrt(L) segments; a heuristic",
    )
)
register(
    SolverSpec(
        name="revolve",
        kinds=("chain",),
        fn=revolve.solve_revolve,
        options_type=revolve.RevolveOptions,
        min_budget=revolve.min_budget_revolve,
        guarantee="uniform chains: the binomial minimum of forward steps (Griewank & Walther 2000); other chains: the binomial schedule as a baseline",
    )
)
register(
    SolverSpec(
        name="dp",
        kinds=("chain",),
        fn=dp.solve_dp,
        options_type=dp.DpOptions,
        min_budget=dp.min_budget_dp,
        guarantee="optimal among persistent chain schedules at its memory discretisation; reports the gap (Beaumont et al. 2019)",
        tradeoff=dp.tradeoff_dp,
    )
)
register(
    SolverSpec(
        name="dp-offload",
        kinds=("chain",),
        fn=offload.solve_dp_offload,
        options_type=offload.OffloadOptions,
        min_budget=offload.min_budget_dp_offload,
        guarantee=(
            "the chain DP with offload to host memory as a third choice for a checkpoint, over a "
            "given HostLink; never predicted slower than dp"
        ),
        exact_min_budget=False,
    )
)
register(
    SolverSpec(
        name="ilp",
        kinds=("graph",),
        fn=ilp.solve_ilp,
        options_type=ilp.IlpOptions,
        min_budget=ilp.min_budget_ilp,
        guarantee="Checkmate MILP: optimal when proven, else the MIP gap and bound (HiGHS or CBC)",
    )
)
register(
    SolverSpec(
        name="ilp-offload",
        kinds=("graph",),
        fn=ilp_offload.solve_ilp_offload,
        options_type=ilp_offload.IlpOffloadOptions,
        min_budget=ilp_offload.min_budget_ilp_offload,
        guarantee=(
            "the Checkmate MILP with offload to host memory over a given HostLink: optimal "
            "within its stage copy model when proven; never predicted slower than ilp"
        ),
    )
)
register(
    SolverSpec(
        name="ilp-rounding",
        kinds=("graph",),
        fn=ilp_rounding.solve_ilp_rounding,
        options_type=ilp_rounding.RoundingOptions,
        min_budget=ilp_rounding.min_budget_rounding,
        guarantee="LP relaxation + Checkmate's rounding for large graphs; reports the LP lower bound",
        exact_min_budget=False,
    )
)
register(
    SolverSpec(
        name="greedy",
        kinds=("graph",),
        fn=graph_greedy.solve_greedy,
        options_type=graph_greedy.GreedyOptions,
        min_budget=graph_greedy.min_budget_greedy,
        guarantee="fast heuristic (keep all, then evict the least compute per byte); trivial lower bound",
        exact_min_budget=False,
    )
)
register(
    SolverSpec(
        name="hierarchical",
        kinds=("graph",),
        fn=hierarchical.solve_hierarchical,
        options_type=hierarchical.HierarchicalOptions,
        min_budget=hierarchical.min_budget_hierarchical,
        guarantee=(
            "chain DP over per-block op-level options (after Rockmate); blocks from "
            "graph.block or segments cut from the graph; heuristic, exact simulated peak and time"
        ),
        requires=lambda g: (
            hierarchical.not_a_training_graph(g) if isinstance(g, Graph) else "it solves graphs"
        ),
        exact_min_budget=False,
    )
)
register(
    SolverSpec(
        name="cpsat",
        kinds=("graph",),
        fn=cpsat.solve_cpsat,
        options_type=cpsat.CpsatOptions,
        min_budget=cpsat.min_budget_cpsat,
        guarantee=(
            "retention intervals on CP-SAT (after Moccasin): optimal among schedules computing "
            "each node at most `intervals` times when it finishes; needs ortools"
        ),
        exact_min_budget=False,
    )
)
register(
    SolverSpec(
        name="auto",
        kinds=("chain", "graph"),
        fn=auto.solve_auto,
        options_type=auto.AutoOptions,
        min_budget=auto.min_budget_auto,
        guarantee="the fastest schedule among the applicable solvers; says which it picked",
    )
)


def available_solvers(kind: str | None = None) -> dict[str, str]:
    """Registered solver names (for `kind`, when given) with their one-line guarantee."""
    return {
        name: spec.guarantee
        for name, spec in sorted(REGISTRY.items())
        if kind is None or kind in spec.kinds
    }


def _resolve(problem: Problem, solver: str, options: dict[str, Any]) -> SolverSpec:
    kind = getattr(problem, "kind", None)
    if kind not in ("chain", "graph"):
        raise TypeError(
            f"problem must be a Chain or a Graph, got {type(problem).__name__}; load one with "
            f"checkpoint_solver.load_problem"
        )
    spec = get_spec(solver, kind)
    reason = spec.requires(problem)
    if reason is not None:
        from checkpoint_solver.errors import UnknownSolverError

        raise UnknownSolverError(f"solver {solver!r} cannot solve this problem: {reason}")
    spec.check_options(options)
    return spec


def _target(problem: Problem, scope: str | None) -> tuple[Problem, Scope]:
    """The problem the solvers see for `scope`: for a whole step, the chain whose activation
    memory is the step's (`checkpoint_solver.problem.states.whole_step_chain`)."""
    which = resolve_scope(problem, scope)
    if which == "activations" or problem.kind == "graph":
        return problem, which
    return whole_step_chain(problem), which


def _floor_error(
    problem: Problem, budget_bytes: int, solver: str, low: int
) -> InfeasibleBudgetError:
    st = problem.states
    assert st is not None
    inputs = problem.x[0] if problem.kind == "chain" else st.inputs
    floor = step_floor(problem)
    return InfeasibleBudgetError(
        budget_bytes,
        max(low, floor),
        solver,
        hint=(
            f"the whole step cannot fit: the optimizer step alone needs {floor} bytes "
            f"({format_bytes(floor)}: parameters {format_bytes(st.params)}, gradients "
            f"{format_bytes(st.grad_bytes)}, optimizer state {format_bytes(st.optimizer)}, its "
            f"temporaries {format_bytes(st.step)}, the inputs {format_bytes(inputs)})"
        )
        if budget_bytes < floor
        else "",
    )


def _solve_target(
    spec: SolverSpec, target: Problem, budget_bytes: int, options: dict[str, Any]
) -> Schedule:
    if spec.name != "auto" and _values.has_values(target):
        return _values.solve_exact(spec, target, budget_bytes, options)  # type: ignore[arg-type]
    schedule: Schedule = spec.fn(target, budget_bytes, **options)
    return schedule


def _as_step(problem: Chain, schedule: Schedule) -> Schedule:
    """A schedule solved on the whole-step chain, for `problem`: its fingerprint and scope, and
    the peak with the optimizer step."""
    from checkpoint_solver.simulation import simulate_ops

    report = simulate_ops(problem, schedule.ops, scope="step", link=schedule.link)
    note = (
        "whole-step budget: parameters, optimizer state and the parameter gradients live at each "
        f"op counted (the optimizer step peaks at {report.step_peak_bytes} bytes)"
    )
    return schedule.replace(
        fingerprint=fingerprint(problem),
        scope="step",
        predicted=dataclasses.replace(
            schedule.predicted,
            peak_bytes=report.peak_bytes,
            stall_time=report.stall_time,
            host_peak_bytes=report.host_peak_bytes,
        ),
        notes=(schedule.notes + "; " if schedule.notes else "") + note,
    )


def _headroom(budget_bytes: int, headroom: int | float | str | None) -> int:
    """The budget left after reserving `headroom`: a fraction of the budget (``0 <= h < 1``) or
    bytes (an int >= 1 or a string such as ``"1GiB"``)."""
    if headroom is None or headroom == 0:
        return budget_bytes
    if isinstance(headroom, float) and 0 < headroom < 1:
        room = math.ceil(budget_bytes * headroom)
    else:
        if isinstance(headroom, float) and headroom >= 1 and not headroom.is_integer():
            raise InvalidBudgetError(
                f"headroom={headroom!r}: give a fraction of the budget in [0, 1) or bytes"
            )
        room = parse_bytes(headroom)
    if room >= budget_bytes:
        raise InvalidBudgetError(
            f"headroom {room} bytes leaves nothing of the budget of {budget_bytes} bytes; give a "
            f"fraction in [0, 1) or fewer bytes"
        )
    return budget_bytes - room


def solve(
    problem: Problem,
    budget: int | float | str,
    solver: str = "auto",
    *,
    scope: str | None = None,
    headroom: int | float | str | None = None,
    **options: Any,
) -> Schedule:
    """Return a schedule for `problem` whose peak memory is at most `budget`.

    Parameters
    ----------
    problem : Chain | Graph
    budget : int | float | str
        Bytes, or a string such as ``"6GiB"`` (see `checkpoint_solver.units.parse_bytes`).
    solver : str
        A registered name (`available_solvers`); ``"auto"`` picks the fastest schedule that fits.
    scope : {"activations", "step", "auto"} or None
        What the budget covers: ``"activations"`` (activations, saved tensors, activation
        gradients and temporaries, the inputs included), or ``"step"``: the whole training step,
        with the parameters, the optimizer state and the parameter gradients as the backward
        creates them (a chain with `Chain.states`, from ``profile(..., optimizer=opt)``), and the
        optimizer step. By default (None, ``"auto"``) ``"step"`` when the problem has model
        states, else ``"activations"``. The schedule records it.
    headroom : float | int | str, optional
        Room kept free for what the predictions do not count, on CUDA the caching allocator's
        fragmentation (``max_memory_reserved`` above ``max_memory_allocated``): a fraction of
        the budget (``0.1``) or bytes (``"512MiB"``). The schedule is solved for, and its
        ``budget_bytes`` is, the budget less it.
    **options
        Solver options; an unknown one raises `UnknownOptionError` listing the valid ones.

    Raises
    ------
    InvalidBudgetError
        For a budget that is not a positive finite number of bytes.
    InfeasibleBudgetError
        When the solver has no schedule within the budget; carries ``min_budget_bytes``. A
        whole-step budget below what the optimizer step alone needs says so, with that floor.
    UnknownSolverError, UnknownOptionError, InvalidOptionError
    """
    expect_problem(problem, "cs.solve")
    budget_bytes = _headroom(parse_bytes(budget), headroom)
    spec = _resolve(problem, solver, options)
    target, which = _target(problem, scope)
    step = which == "step"
    if step and budget_bytes < step_floor(problem):
        low = min_budget(problem, solver, scope="step", **options)
        raise _floor_error(problem, budget_bytes, spec.name, low)
    start = time.perf_counter()
    try:
        if step and isinstance(problem, Graph):
            schedule = graph_step_solve(spec, problem, budget_bytes, options)
        else:
            schedule = _solve_target(spec, target, budget_bytes, options)
    except InfeasibleBudgetError as exc:
        if not step:
            if exc.min_budget_bytes is not None:
                raise
            # Every refusal names the least budget that works: the solver's own minimum.
            raise InfeasibleBudgetError(
                budget_bytes,
                _min_or_none(problem, solver, which, options),
                exc.solver,
                hint=exc.hint,
            ) from None
        raise _floor_error(problem, budget_bytes, spec.name, exc.min_budget_bytes or 0) from None
    elapsed = time.perf_counter() - start
    if schedule.solve_s is None:
        schedule = schedule.replace(solve_s=elapsed)
    if step and isinstance(problem, Chain):
        schedule = _as_step(problem, schedule)
    report = simulate(problem, schedule)
    if not report.valid:
        raise CheckpointSolverError(
            f"internal error: solver {schedule.solver!r} produced a schedule the simulator rejects "
            f"({report.violation}); please report this with the problem file"
        )
    return schedule


def _min_or_none(problem: Problem, solver: str, scope: str, options: dict[str, Any]) -> int | None:
    """`min_budget`, or None when the solver cannot give it (a time limit, a backend)."""
    try:
        return min_budget(problem, solver, scope=scope, **options)
    except CheckpointSolverError:
        return None


def min_budget(
    problem: Problem, solver: str = "auto", *, scope: str | None = None, **options: Any
) -> int:
    """The smallest budget (bytes) at which `solver` returns a schedule for `problem` (for
    `scope`, as in `solve`: a whole-step minimum is at least what the optimizer step needs):
    exact (one byte less raises) for the solvers whose `SolverSpec.exact_min_budget` says so;
    the heuristics' is the least budget one of their candidates meets.

    Budgets are positive, so this is at least 1 even for a problem whose values are all empty.
    """
    expect_problem(problem, "cs.min_budget")
    spec = _resolve(problem, solver, options)
    target, which = _target(problem, scope)
    floor = step_floor(problem) if which == "step" else 0
    if which == "step" and isinstance(problem, Graph):
        return max(1, graph_step_min_budget(spec, problem, options), floor)
    if spec.name != "auto" and _values.has_values(target):
        low = _values.min_budget_exact(spec, target, options)  # type: ignore[arg-type]
    else:
        low = spec.min_budget(target, **options)
    return max(1, low, floor)


@dataclass(frozen=True, slots=True)
class TradeoffPoint:
    """One point of a memory/time trade-off curve (`stall_time`: an offload schedule's waits
    for copies, 0 otherwise; `step_time` = compute plus waits)."""

    budget_bytes: int
    peak_bytes: int | None
    compute_time: float
    overhead: float
    feasible: bool
    stall_time: float = 0.0

    @property
    def step_time(self) -> float:
        return self.compute_time + self.stall_time


def tradeoff(
    problem: Problem,
    budgets: Iterable[int | float | str] | None = None,
    solver: str = "auto",
    *,
    points: int = 20,
    scope: str | None = None,
    **options: Any,
) -> list[TradeoffPoint]:
    """The memory/time trade-off of `solver`: one point per budget.

    With `budgets` ``None``, `points` budgets evenly spaced from the solver's minimum budget to the
    store-all peak. Infeasible budgets give ``feasible=False`` points with infinite time. Solvers
    that can (``dp``) answer every budget from one table instead of one solve per budget.

    Examples
    --------
    >>> from checkpoint_solver.problem.synthetic import transformer_chain
    >>> curve = tradeoff(transformer_chain(4), solver="dp", points=5)
    >>> [round(p.overhead, 3) for p in curve]
    [0.52, 0.101, 0.057, 0.038, 0.0]
    """
    expect_problem(problem, "cs.tradeoff")
    int_option("points", points, high=10_000, hint="(one solve per point for most solvers)")
    spec = _resolve(problem, solver, options)
    target, which = _target(problem, scope)
    if budgets is None:
        low = min_budget(problem, solver, scope=which, **options)
        high = max(low, min_budget(problem, "store_all", scope=which))
        n = max(points, 1)
        values = sorted({max(1, low + (high - low) * k // max(n - 1, 1)) for k in range(n)})
    else:
        values = [parse_bytes(b) for b in budgets]
    if spec.tradeoff is not None and not _values.has_values(target) and which == "activations":
        schedules = spec.tradeoff(problem, values, **options)
    else:
        schedules = []
        for b in values:
            try:
                schedules.append(solve(problem, b, solver, scope=which, **options))
            except InfeasibleBudgetError:
                schedules.append(None)
    curve = []
    for b, s in zip(values, schedules, strict=True):
        if s is None:
            curve.append(TradeoffPoint(b, None, math.inf, math.inf, False))
            continue
        p = s.predicted
        curve.append(TradeoffPoint(b, p.peak_bytes, p.compute_time, p.overhead, True, p.stall_time))
    return curve
