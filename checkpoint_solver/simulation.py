"""The one judge of schedules: validity, peak memory, compute time and the memory timeline.

`simulate` replays a schedule's ops against a problem's memory rules, stops at the first violation
and reports it with its op index. It is pure and deterministic, never prints and never "fixes" a
schedule. Every solver's output is checked by it, and the chain DP shares these exact rules.

Chain memory rules
------------------
After Beaumont, Eyraud-Dubois, Herrmann, Joly, Shilova, "Optimal checkpointing for heterogeneous
chains" (2019). Stages are 1-based; ``x[j]`` is the size of activation ``a[j]`` and of its gradient
``delta[j]``; ``xbar[i]`` is the size of stage i's tape ``abar[i]``, which *contains* ``a[i]``.

Three kinds of values can be live: a *plain* activation ``a[j]`` (``x[j]`` bytes), a tape
``abar[i]`` (``xbar[i]`` bytes; it makes ``a[i]`` available too) and a gradient ``delta[j]``
(``x[j]`` bytes). ``a[j]`` is *available* when ``a[j]`` is live plain or ``abar[j]`` is live.

At the start only ``a[0]`` (the model input) is live: memory is ``x[0]``. For each op, "peak"
is the memory while it runs; the memory after it is what the timeline records.

==============  =====================================  ====================================  ====================================
op              must hold before                       peak while running                    after
==============  =====================================  ====================================  ====================================
``F_n(i)``      ``a[i-1]`` live plain, ``i >= 2``;     ``M + x[i] + ofn[i]``                 ``a[i]`` live plain; ``a[i-1]``
                ``a[i]`` not live plain                                                      dropped: ``M + x[i] - x[i-1]``
``F_ck(i)``     ``a[i-1]`` available;                  ``M + x[i] + ofn[i]``                 ``a[i]`` live plain, ``a[i-1]`` kept:
                ``a[i]`` not live plain                                                      ``M + x[i]``
``F_all(i)``    ``a[i-1]`` available;                  ``M + xbar[i] + of[i]``               ``abar[i]`` live: ``M + xbar[i]``
                ``abar[i]`` not live
``B(i)``        ``abar[i]`` live; ``a[i-1]``           ``M' + x[i-1] + ob[i]`` where         ``delta[i-1]`` live; ``abar[i]``,
                available; ``delta[i]`` live (for      ``M' = M + x[L]`` for ``i = L``       ``delta[i]`` and a plain ``a[i-1]``
                ``i = L`` the loss creates             (the seed gradient) else ``M``        freed: ``M' + x[i-1] - xbar[i] -
                ``delta[L]`` first)                                                          x[i] - (x[i-1] if plain)``
``free(a[j])``  ``a[j]`` live plain, ``j >= 1``        ``M``                                 ``M - x[j]``
==============  =====================================  ====================================  ====================================

A forward op of stage ``i`` after ``B(i)`` and a second ``B(i)`` are violations. ``a[0]`` belongs
to the caller, so neither ``F_n(1)`` nor ``free(a[0])`` may drop it. While the tape ``abar[i]`` is
live, its input ``a[i-1]`` must stay available: autograd's tape may hold that very tensor (a linear
layer saves its input), so dropping the plain ``a[i-1]`` (by ``F_n(i)`` or ``free(a[i-1])``) would
free nothing in a real run; it is a violation unless ``abar[i-1]`` also holds ``a[i-1]``. A schedule is complete when
``B(L), ..., B(1)`` have all run; it is valid when it is complete, breaks no rule, and no op's peak
exceeds the schedule's budget. Compute time is the sum of ``uf[i]`` over forward ops and ``ub[i]``
over ``B(i)`` ops.

With transients taken as measured (`Chain`: ``of``, ``ofn``, ``ob`` may be negative, what an op
adds in all may not), each op's peak is the memory before it plus what the op adds. Gradients are
``delta[i]`` bytes (the chain's `delta`, ``x`` unless measured otherwise) in place of ``x[i]``.

Offload
-------
With a `HostLink` (the schedule's ``link``), a kept boundary can move to host memory and back.
Copies run on one stream per direction, one after the other on a stream, each beside the one
compute op (``F``, ``B``) issued after it; when that op ends the step waits for the copy if it is
not done. Time is then ``compute_time`` plus those waits (``stall_time``).

==================  =====================================  ============================================
op                  must hold before                       effect
==================  =====================================  ============================================
``offload(a[j])``   ``a[j]`` live plain, ``j >= 1``, not   host gains ``a[j]``'s bytes now; the device
                    on the host already; no live tape      copy stays through the next compute op
                    ``abar[j+1]`` (it may hold ``a[j]``)    (which may read it), then is dropped
``prefetch(a[j])``  ``a[j]`` on the host, not live         the device takes ``a[j]``'s bytes now; the
                                                           next compute op may not read it; after
                                                           that op ``a[j]`` is live plain and its
                                                           host bytes are released
==================  =====================================  ============================================

The host bytes of ``a[j]`` are what the executor copies: ``x[j]``, or with boundary values its
values a rerun reads and what is not among the values, but the values another kept boundary
holds when the offload starts (a plain one, or a taped one a forward has read): moving those
would free nothing, so they stay on the device until the prefetch (no second copy comes back).
Over the link's ``host_budget_bytes``, an ``offload`` is a violation.

Boundary values
---------------
A profiled chain also lists the tensors its boundaries are made of (`Chain.values`: each with its
producer, readers, the tapes that save it and the last stage the model's code holds it through).
Then ``M`` above counts only what is not among them (a tape's own saved tensors, gradients,
transients), and each *copy* of a value is counted once, over the ops something holds it, as the
executor (`checkpoint_solver.runtime.executor`) holds it:

- ``F`` of the producer makes a new copy; any other ``F`` passes on the copies of the boundary it
  reads (the plain ``a[i-1]`` if live, else the tape's).
- In the forward phase (the ops before the first ``B``) the model's own code holds a copy from
  the op that makes it through its last reader's forward (or the stage it is held until).
- A live plain ``a[j]``, and a tape's output that a later forward reads, hold the values of
  ``a[j]`` that some stage after ``j`` the schedule runs again reads, until ``a[j]`` is dropped
  (``F_n(j+1)``, ``B(j+1)``, ``free``) or the tape is freed (``B(j)``).
- A tape ``abar[i]`` holds the copies stage ``i`` saved (its own outputs or its inputs) until
  ``B(i)``.

Counting values per copy needs the whole op sequence (what a later op reads), so such chains
are simulated in two passes: the rules and ``M`` first, then each copy over its ops.

Whole step
----------
A schedule with ``scope="step"`` is judged on the whole training step of a problem with model
states (`checkpoint_solver.problem.states`). On a chain, the ops run on `whole_step_chain`, the
chain whose memory under the rules above is the step's: the parameters and optimizer state held
throughout, the parameter gradients of the stages already back-propagated held with
``delta[t]``, those ``B(i)`` makes counted while it runs. On a graph, each op's memory gains the
states and the gradients of the nodes computed so far (a node's at its first computation; a
shared gradient's second copy over its window). After the last op the optimizer step runs: what
the backward left, the inputs, the states, every gradient and the step's own temporaries; over
the budget, it is a violation at index ``len(ops)``.

Graph memory rules
------------------
Checkmate's accounting (Jain et al., MLSys 2020). Nodes with role ``"input"`` or ``"param"`` are
live throughout and count only when ``graph.sources_in_budget``. ``compute(v)`` needs every input
of ``v`` live and ``v`` not live; its peak is the memory with ``v``'s output added, which stays live
until ``free(v)``. Recomputing a node whose rng policy is ``"forbid_recompute"`` is a violation.
The schedule is complete when every op node has been computed at least once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

from checkpoint_solver._args import expect_problem, expect_schedule
from checkpoint_solver.errors import (
    FingerprintMismatchError,
    InvalidProblemError,
    InvalidScheduleError,
)
from checkpoint_solver.problem import (
    Chain,
    Graph,
    Problem,
    RngPolicy,
    Role,
    fingerprint,
    whole_step_chain,
)
from checkpoint_solver.schedule.link import HostLink
from checkpoint_solver.schedule.ops import (
    Bwd,
    Compute,
    Free,
    FreeActivation,
    FwdCheckpoint,
    FwdNoTape,
    FwdTape,
    Offload,
    OffloadValue,
    Op,
    Prefetch,
    PrefetchValue,
)
from checkpoint_solver.schedule.schedule import Schedule

__all__ = ["SimulationReport", "Violation", "check", "simulate", "simulate_ops"]


@dataclass(frozen=True, slots=True)
class Violation:
    """The first broken rule: the op's position, its text, and why."""

    index: int
    op: str | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationReport:
    """What `simulate` found.

    Attributes
    ----------
    valid : bool
        Complete, no rule broken, every op within the budget.
    violation : Violation | None
        The first violation (``None`` when valid).
    peak_bytes : int
        The largest memory while any op ran (up to the violation, if any).
    peak_index : int
        Index of the op at which the peak occurs (-1 for an empty schedule).
    compute_time : float
        Sum of the costs of the ops run, recomputations included.
    recompute_time : float
        ``compute_time`` minus the store-all time.
    overhead : float
        ``compute_time / store_all_time - 1`` (0 when the store-all time is 0).
    timeline : tuple[int, ...]
        Memory after each op (for plots).
    op_peaks : tuple[int, ...]
        Memory while each op runs.
    budget_bytes : int | None
        The budget the schedule was checked against.
    scope : {"activations", "step"}
        What the peaks cover. For ``"step"`` (a chain with model states), every op's memory
        includes the parameters, the optimizer state and the parameter gradients live at that op,
        and the optimizer step after the last op is checked too.
    step_peak_bytes : int | None
        For ``"step"``: the optimizer step's peak (after the last op); the overall peak is at
        ``peak_index == len(ops)`` when it is the largest.
    stall_time : float
        With a link: the time the step waits for copies beyond its compute; the step takes
        ``compute_time + stall_time``. 0 without one.
    host_peak_bytes : int | None
        With a link: the most host memory the copies hold at once; None without one.
    """

    valid: bool
    violation: Violation | None
    peak_bytes: int
    peak_index: int
    compute_time: float
    recompute_time: float
    overhead: float
    timeline: tuple[int, ...]
    op_peaks: tuple[int, ...]
    budget_bytes: int | None
    scope: str = "activations"
    step_peak_bytes: int | None = None
    stall_time: float = 0.0
    host_peak_bytes: int | None = None

    @property
    def step_time(self) -> float:
        """Compute time plus the waits for copies: the step's time."""
        return self.compute_time + self.stall_time


def simulate(problem: Problem, schedule: Schedule) -> SimulationReport:
    """Replay `schedule` on `problem` and report validity, peak memory and time.

    Raises
    ------
    FingerprintMismatchError
        When the schedule was solved for another problem (kind, size or fingerprint differ).

    Examples
    --------
    >>> from checkpoint_solver.problem.synthetic import uniform_chain
    >>> from checkpoint_solver.solvers import solve
    >>> chain = uniform_chain(4, x=10)
    >>> report = simulate(chain, solve(chain, 1000, solver="store_all"))
    >>> report.valid, report.peak_bytes, report.overhead
    (True, 70, 0.0)
    """
    expect_problem(problem, "cs.simulate")
    expect_schedule(schedule, "cs.simulate")
    _check_match(problem, schedule)
    return simulate_ops(
        problem,
        schedule.ops,
        budget_bytes=schedule.budget_bytes,
        scope=schedule.scope,
        link=schedule.link,
    )


def check(problem: Problem, schedule: Schedule) -> SimulationReport:
    """Like `simulate`, but raise `InvalidScheduleError` for the first violation."""
    report = simulate(problem, schedule)
    if report.violation is not None:
        v = report.violation
        raise InvalidScheduleError(v.index, v.op, v.reason)
    return report


def simulate_ops(
    problem: Problem,
    ops: tuple[Op, ...] | list[Op],
    *,
    budget_bytes: int | None = None,
    scope: str = "activations",
    link: HostLink | None = None,
) -> SimulationReport:
    """Simulate a bare op sequence (no fingerprint check); `budget_bytes=None` means unbounded.
    `link` times offload and prefetch ops (which are violations without one).

    With ``scope="step"`` (a chain with `Chain.states`), memory is the whole step's: the ops run
    on `whole_step_chain` (whose activation memory is the step's memory, op by op), then the
    optimizer step runs with what the backward left, every gradient and its own temporaries."""
    if scope not in ("activations", "step"):
        raise ValueError(f"scope must be 'activations' or 'step', got {scope!r}")
    if scope == "step":
        if problem.states is None:
            raise InvalidProblemError(
                "a whole-step schedule needs a problem with model states (profile with "
                "optimizer=); this problem has none",
            )
        if problem.kind == "graph":
            return _graph_step(problem, ops, budget_bytes, link)
        return _step(problem, ops, budget_bytes, link)
    if problem.kind == "chain":
        return _ChainSim(problem, budget_bytes, link).run(ops)
    return _GraphSim(problem, budget_bytes, link).run(ops)


def _step_over(index: int, step_peak: int, budget: int) -> Violation:
    """The optimizer step (after the last op) over the budget."""
    return Violation(
        index,
        None,
        f"the optimizer step needs {step_peak} bytes (parameters, every gradient, the optimizer "
        f"state and its temporaries), over the budget of {budget} bytes by {step_peak - budget}",
    )


def _graph_step(
    graph: Graph, ops: tuple[Op, ...] | list[Op], budget: int | None, link: HostLink | None = None
) -> SimulationReport:
    """A graph's whole step: every op's memory plus the model states (`Graph.states`), each
    node's parameter gradients from its first computation on (accumulating, ``.grad`` all along
    and the new gradients while their node runs), then the optimizer step."""
    st = graph.states
    assert st is not None
    rules = _GraphSim(graph, None, link).run(ops)
    fixed = st.fixed_bytes
    made = 0
    seen: set[int] = set()
    peaks: list[int] = []
    timeline: list[int] = []
    violation = rules.violation
    initial = graph.budget_source_bytes + fixed
    peak, peak_index = initial, -1
    opens: dict[int, int] = {}
    closes: dict[int, int] = {}
    for first, last, nbytes in st.windows:
        opens[first] = opens.get(first, 0) + nbytes
        closes[last] = closes.get(last, 0) + nbytes
    pending = 0  # second copies of shared gradients in flight (`ModelStates.windows`)
    for t, op_peak in enumerate(rules.op_peaks):
        op = ops[t]
        during = made
        closing = 0
        if isinstance(op, Compute) and op.node not in seen:
            seen.add(op.node)
            during += st.grads[op.node]
            if not st.accumulate:
                made += st.grads[op.node]
            pending += opens.get(op.node, 0)
            closing = closes.get(op.node, 0)
        whole = op_peak + fixed + during + pending
        pending -= closing
        peaks.append(whole)
        if t < len(rules.timeline):
            timeline.append(rules.timeline[t] + fixed + made + pending)
        if whole > peak:
            peak, peak_index = whole, t
        if budget is not None and whole > budget and (violation is None or violation.index > t):
            violation = Violation(
                t,
                str(op),
                f"needs {whole} bytes while running, over the budget of {budget} bytes by "
                f"{whole - budget}",
            )
            break
    step_peak = None
    if violation is None:
        final = timeline[-1] if timeline else initial
        step_peak = final + (0 if st.accumulate else st.grad_bytes - made) + st.step
        if step_peak > peak:
            peak, peak_index = step_peak, len(ops)
        if budget is not None and step_peak > budget:
            violation = _step_over(len(ops), step_peak, budget)
    return dataclasses.replace(
        rules,
        valid=violation is None,
        violation=violation,
        peak_bytes=peak,
        peak_index=peak_index,
        timeline=tuple(timeline),
        op_peaks=tuple(peaks),
        budget_bytes=budget,
        scope="step",
        step_peak_bytes=step_peak,
    )


def _step(
    chain: Chain, ops: tuple[Op, ...] | list[Op], budget: int | None, link: HostLink | None
) -> SimulationReport:
    assert chain.states is not None
    whole = whole_step_chain(chain)
    report = _ChainSim(whole, budget, link).run(ops)
    report = dataclasses.replace(report, scope="step")
    if not report.valid:
        return report
    # After B(1) the rules have let a[0] go, which here holds the parameters and the optimizer
    # state too; they, and the caller's inputs, are all there for the optimizer step, beside
    # what the backward left (every gradient, in delta[0], and any boundary not freed).
    final = report.timeline[-1] if report.timeline else 0
    step_peak = final + whole.x[0] + chain.states.step
    report = dataclasses.replace(report, step_peak_bytes=step_peak)
    if step_peak > report.peak_bytes:
        report = dataclasses.replace(report, peak_bytes=step_peak, peak_index=len(ops))
    if budget is not None and step_peak > budget:
        return dataclasses.replace(
            report, valid=False, violation=_step_over(len(ops), step_peak, budget)
        )
    return report


def _check_match(problem: Problem, schedule: Schedule) -> None:
    size = problem.length if problem.kind == "chain" else problem.size
    if schedule.kind != problem.kind:
        raise FingerprintMismatchError(
            f"the schedule is for a {schedule.kind} problem but a {problem.kind} was given; "
            f"simulate it with the problem it was solved for"
        )
    fp = fingerprint(problem)
    if schedule.fingerprint != fp or schedule.size != size:
        raise FingerprintMismatchError(
            f"the schedule was solved for problem {schedule.fingerprint} (size {schedule.size}) "
            f"but this problem is {fp} (size {size}); re-solve for this problem"
        )


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Sim:
    """Shared bookkeeping: memory, peaks, time and the first violation."""

    def __init__(
        self, budget_bytes: int | None, store_all_time: float, link: HostLink | None = None
    ) -> None:
        self.budget = budget_bytes
        self.store_all_time = store_all_time
        self.link = link
        self.clock = self.stall = 0.0  # the compute stream's time, and its waits for copies
        self.stream_free = {"d2h": 0.0, "h2d": 0.0}
        self.host_mem = self.host_peak = 0
        self.mem = 0
        self.peak = 0
        self.peak_index = -1
        self.times: list[float] = []
        self.timeline: list[int] = []
        self.op_peaks: list[int] = []

    def account(self, index: int, op_peak: int) -> None:
        self.op_peaks.append(op_peak)
        if op_peak > self.peak:
            self.peak = op_peak
            self.peak_index = index
        if self.budget is not None and op_peak > self.budget:
            raise _Stop(
                f"needs {op_peak} bytes while running, over the budget of {self.budget} bytes "
                f"by {op_peak - self.budget}"
            )

    def step(self, op: Op) -> None:
        raise NotImplementedError

    def finish(self) -> str | None:
        raise NotImplementedError

    def _start_copy(self, nbytes: int, direction: str, after: float = 0.0) -> float:
        """Start a copy on `direction`'s stream (after the compute issued so far, the stream's
        earlier copies and `after`); returns when it ends."""
        if self.link is None:
            raise _Stop("copies to host memory need a link: solve with link= (a HostLink)")
        start = max(self.clock, self.stream_free[direction], after)
        end = start + self.link.seconds(nbytes, "d2h" if direction == "d2h" else "h2d")
        self.stream_free[direction] = end
        return end

    def _wait(self, until: float) -> None:
        if until > self.clock:
            self.stall += until - self.clock
            self.clock = until

    def _host(self, nbytes: int) -> None:
        """Host memory grows by `nbytes` (negative: shrinks), within the link's host budget."""
        self.host_mem += nbytes
        self.host_peak = max(self.host_peak, self.host_mem)
        limit = self.link.host_budget_bytes if self.link is not None else None
        if nbytes > 0 and limit is not None and self.host_mem > limit:
            raise _Stop(
                f"host memory would hold {self.host_mem} bytes, over the link's host budget of "
                f"{limit} bytes by {self.host_mem - limit}"
            )

    def run(self, ops: tuple[Op, ...] | list[Op]) -> SimulationReport:
        self.peak = self.mem
        violation = None
        for index, op in enumerate(ops):
            try:
                self.step_at(index, op)
            except _Stop as stop:
                violation = Violation(index, str(op), stop.reason)
                break
            self.timeline.append(self.mem)
        else:
            reason = self.finish()
            if reason is not None:
                violation = Violation(len(ops), None, reason)
        compute_time = math.fsum(self.times)
        overhead = compute_time / self.store_all_time - 1 if self.store_all_time > 0 else 0.0
        return SimulationReport(
            valid=violation is None,
            violation=violation,
            peak_bytes=self.peak,
            peak_index=self.peak_index,
            compute_time=compute_time,
            recompute_time=compute_time - self.store_all_time,
            overhead=overhead,
            timeline=tuple(self.timeline),
            op_peaks=tuple(self.op_peaks),
            budget_bytes=self.budget,
        )

    def step_at(self, index: int, op: Op) -> None:
        self.index = index
        self.step(op)


class _ChainSim(_Sim):
    def __init__(
        self, chain: Chain, budget_bytes: int | None, link: HostLink | None = None
    ) -> None:
        super().__init__(budget_bytes, chain.store_all_time)
        self.c = chain
        n = chain.length
        self.link = link
        self.host = [False] * (n + 1)  # a[j] has a copy on the host
        self.host_bytes = [0] * (n + 1)
        self.host_mem = self.host_peak = 0
        self.incoming: set[int] = set()  # prefetched, not yet available
        self.drops: list[int] = []  # offloaded: dropped on the device when the next op ends
        self.arrivals: list[int] = []  # prefetched: available when the next op ends
        self.waits: list[float] = []  # ends of the copies the next compute op waits for
        self.clock = self.stall = 0.0
        self.stream_free = {"d2h": 0.0, "h2d": 0.0}
        self.plain = [False] * (n + 1)
        self.tape = [False] * (n + 1)  # index 0 unused
        self.grad = [False] * (n + 1)
        self.done = [False] * (n + 1)
        self.plain[0] = True
        self.mem = chain.x[0]
        # With the boundaries' values known, each copy of a value is counted once, while
        # something holds it (see the module notes); `mem` holds the rest: what is not among the
        # values, every gradient, and what ops add at their peaks.
        crossing = [0] * (n + 1)
        self.at_cut: list[list[int]] = [[] for _ in range(n + 1)]
        self.saved_at: list[list[int]] = [[] for _ in range(n + 1)]
        self.read_at: list[list[int]] = [[] for _ in range(n + 1)]
        for idx, v in enumerate(chain.values):
            for k in range(v.producer, v.until):
                crossing[k] += v.nbytes
                self.at_cut[k].append(idx)
            for r in v.saved:
                self.saved_at[r].append(idx)
            for r in range(v.producer + 1, v.until + 1):
                self.read_at[r].append(idx)
        self.own_x = [x - b for x, b in zip(chain.x, crossing, strict=True)]
        self.own_xbar = [0] + [chain.xbar[k - 1] - crossing[k] for k in range(1, n + 1)]
        # A live boundary copy: its values' copies and the op that made it (-1: the inputs).
        self.plain_at: list[tuple[dict[int, int], int] | None] = [None] * (n + 1)
        self.tape_at: list[tuple[dict[int, int], int] | None] = [None] * (n + 1)
        self.plain_at[0] = ({}, -1)
        self.kept_tapes: set[int] = set()
        self.tape_saves: list[list[int]] = [[] for _ in range(n + 1)]
        self.copy_bytes: list[int] = []
        self.copy_made: list[int] = []  # the op that made each copy
        self.spans: list[list[tuple[int, int]]] = []  # per copy: (from op, to op) it is held
        self.first_b = -1
        self.needed: list[set[int]] = [set() for _ in range(n + 1)]
        # Per offloaded a[j]: its needed values another kept boundary holds on the device (the
        # executor leaves them there, not copied): value -> (its copy, held since).
        self.staying: dict[int, dict[int, tuple[int, int]]] = {}

    def _prepare(self, ops: tuple[Op, ...] | list[Op]) -> None:
        """What the executor learns from the whole schedule: the stages it reruns after the
        first backward, and so the values each kept boundary holds (those a rerun reads)."""
        first_b = next((k for k, op in enumerate(ops) if isinstance(op, Bwd)), len(ops))
        rerun = {
            op.stage for op in ops[first_b:] if isinstance(op, (FwdNoTape, FwdCheckpoint, FwdTape))
        }
        self.first_b = first_b
        for idx, v in enumerate(self.c.values):
            for k in range(v.producer, v.until):
                if any(r > k and r in rerun for r in v.readers):
                    self.needed[k].add(idx)

    def _hold(self, copies: dict[int, int], which: Iterable[int], start: int, end: int) -> None:
        for idx in which:
            self.spans[copies[idx]].append((start, end))

    def _drop_plain(self, j: int) -> None:
        """The plain boundary a[j] is dropped at this op: it held its needed values till now
        (but those its host copy leaves on the device, held on till its prefetch)."""
        held = self.plain_at[j]
        if held is not None and held[1] >= 0:
            stay = self.staying.get(j, {})
            self._hold(held[0], self.needed[j] - stay.keys(), held[1], self.index)
        self.plain_at[j] = None

    def _held_elsewhere(self, j: int) -> dict[int, tuple[int, int]]:
        """The needed values of the plain a[j] that another kept boundary holds as well (a plain
        one, or a taped one a forward has read), as the executor finds them when it offloads
        a[j]: value -> (its copy, held by a[j] since). The executor keeps a taped boundary from
        its forward on; between a rerun's ``F_all(k)`` and the forward that reads it, an offload
        here copies a value the executor leaves: over-predicted, never under."""
        src = self.plain_at[j]
        if src is None or not self.c.values:
            return {}
        copies, start = src
        ks = [k for k in range(1, self.c.length + 1) if k != j and self.plain[k]]
        holders = [(k, self.plain_at[k]) for k in ks]
        holders += [(k, self.tape_at[k]) for k in sorted(self.kept_tapes)]
        out = {}
        for idx in self.needed[j]:
            c = copies[idx]
            for k, held in holders:
                if held is not None and idx in self.needed[k] and held[0].get(idx) == c:
                    out[idx] = (c, start)
                    break
        return out

    def _copies(self, i: int, taped: bool) -> None:
        """Stage i's forward at this op: the copies its output holds (new ones for the values it
        makes), the forward's own reads (the model's code holds a value until its last read),
        the copies its tape saves (held until ``B(i)``)."""
        if not self.c.values:
            return
        source = self.plain_at[i - 1] if self.plain[i - 1] else self.tape_at[i - 1]
        assert source is not None
        src = source[0]
        if not self.plain[i - 1] and i - 1 >= 1:
            self.kept_tapes.add(i - 1)
        made: dict[int, int] = {}
        for idx in self.at_cut[i]:
            if self.c.values[idx].producer == i:
                made[idx] = len(self.copy_bytes)
                self.copy_bytes.append(self.c.values[idx].nbytes)
                self.copy_made.append(self.index)
                self.spans.append([])
            else:
                made[idx] = src[idx]
        if self.index < self.first_b:
            # The model's own forward: its code holds a value from the op that makes it through
            # the forward of its last reader, or of the stage it is `held` until.
            for idx in self.read_at[i]:
                copy = src[idx]
                self.spans[copy].append((self.copy_made[copy], self.index))
        if taped:
            self.tape_saves[i] = [
                made[idx] if idx in made else src[idx] for idx in self.saved_at[i]
            ]
            self.tape_at[i] = (made, self.index)
        else:
            self.plain_at[i] = (made, self.index)

    def _end_tape(self, i: int) -> None:
        """``B(i)`` frees the tape: the copies it saved, and its output if a rerun read it."""
        if not self.c.values:
            return
        held = self.tape_at[i]
        if held is not None:
            for copy in self.tape_saves[i]:
                self.spans[copy].append((held[1], self.index))
            if i in self.kept_tapes:
                self._hold(held[0], self.needed[i], held[1], self.index)
        self.tape_at[i] = None
        self.tape_saves[i] = []
        self.kept_tapes.discard(i)

    def run(self, ops: tuple[Op, ...] | list[Op]) -> SimulationReport:
        report = self._run_values(ops)
        if self.link is None:
            return report
        return dataclasses.replace(report, stall_time=self.stall, host_peak_bytes=self.host_peak)

    # -- offload ----------------------------------------------------------------------------
    def step_at(self, index: int, op: Op) -> None:
        self.index = index
        if isinstance(op, (Offload, Prefetch)):
            self._copy(op)
            return
        ran = len(self.times)
        self.step(op)
        if len(self.times) > ran:
            self._after_compute(self.times[-1])

    def _after_compute(self, cost: float) -> None:
        """A compute op ended: wait for the copies beside it, then drop what was offloaded and
        make available what was prefetched."""
        end = self.clock + cost
        self.clock = max(end, *self.waits) if self.waits else end
        self.stall += self.clock - end
        self.waits = []
        for j in self.drops:
            if self.plain[j]:
                self._check_drop(j)  # the op beside the copy may have taped stage j + 1
                self.plain[j] = False
                self.mem -= self.own_x[j]
                self._drop_plain(j)
        for j in self.arrivals:
            self.plain[j] = True
            self.incoming.discard(j)
            self.host[j] = False
            self._host(-self.host_bytes[j])
        self.drops, self.arrivals = [], []

    def _copy_bytes(self, j: int) -> int:
        """What the executor copies for a[j]: what is not among the values, and the values of
        a[j] that a rerun reads (but those another kept boundary holds: they stay)."""
        stay = self.staying.get(j, {})
        return self.own_x[j] + sum(
            self.c.values[idx].nbytes for idx in self.needed[j] if idx not in stay
        )

    def _copy(self, op: Offload | Prefetch) -> None:
        j = op.index
        if self.link is None:
            raise _Stop(
                f"{op} copies to host memory, but no link was given; solve with link= (a "
                f"HostLink), or simulate a schedule that carries one"
            )
        if not 1 <= j <= self.c.length:
            raise _Stop(
                f"a[{j}] cannot be copied; this chain's boundaries are a[1..{self.c.length}]"
            )
        if isinstance(op, Offload):
            if not self.plain[j] or j in self.drops:
                raise _Stop(
                    f"a[{j}] is not kept plain on the device, so there is nothing to offload"
                )
            self._check_drop(j)
            self.staying[j] = self._held_elsewhere(j)
            nbytes = self._copy_bytes(j)
            self.host[j] = True
            self.host_bytes[j] = nbytes
            self._host(nbytes)
            self.drops.append(j)
            self.account(self.index, self.mem)
            self.waits.append(self._start_copy(nbytes, "d2h"))
            return
        if not self.host[j] or j in self.incoming:
            raise _Stop(f"a[{j}] has no copy on the host to prefetch; offload it first")
        if self.plain[j]:
            raise _Stop(f"a[{j}] is already kept on the device")
        nbytes = self.host_bytes[j]
        self.account(self.index, self.mem + nbytes)
        self.mem += self.own_x[j]
        self.incoming.add(j)
        self.arrivals.append(j)
        if self.c.values:
            made: dict[int, int] = {}
            stay = self.staying.pop(j, {})
            for idx in self.at_cut[j]:
                if idx in stay:  # left on the device: the same copy, held on
                    copy, start = stay[idx]
                    self.spans[copy].append((start, self.index))
                    made[idx] = copy
                    continue
                made[idx] = len(self.copy_bytes)
                self.copy_bytes.append(self.c.values[idx].nbytes if idx in self.needed[j] else 0)
                self.copy_made.append(self.index)
                self.spans.append([])
            self.plain_at[j] = (made, self.index)
        self.waits.append(self._start_copy(nbytes, "h2d"))

    def finish(self) -> str | None:
        if self.waits:
            end = max(self.waits)
            self.stall += max(0.0, end - self.clock)
            self.clock = max(self.clock, end)
            self.waits = []
        return self._finish_rules()

    def _run_values(self, ops: tuple[Op, ...] | list[Op]) -> SimulationReport:
        if not self.c.values:
            return super().run(ops)
        # Whether a value is still held depends on the ops after it: replay the rules first
        # (memory without the values, no budget), then add each copy over the ops it is held.
        self._prepare(ops)
        budget, self.budget = self.budget, None
        rules = super().run(ops)
        self.budget = budget
        n_ops = len(self.op_peaks)
        self.index = n_ops
        for j in range(1, self.c.length + 1):  # boundaries still held when the ops end
            self._drop_plain(j)
        for stay in self.staying.values():  # left on the device by a copy never brought back
            for copy, start in stay.values():
                self.spans[copy].append((start, n_ops))
        before = [0] * (n_ops + 2)  # copies held while op t runs (made by an earlier op)
        after = [0] * (n_ops + 2)  # copies held after op t
        for nbytes, made, spans in zip(self.copy_bytes, self.copy_made, self.spans, strict=True):
            spans.sort()
            merged: list[list[int]] = []  # held over the union of its spans, gaps possible
            for a, b in spans:
                if merged and a <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            for a, b in merged:
                b = min(b, n_ops)
                if b > a:
                    # The op that makes it counts it in its growth; a later holder from op a on.
                    before[a + 1 if a == made else a] += nbytes
                    before[b + 1] -= nbytes
                    after[a] += nbytes
                    after[b] -= nbytes
        peaks, timeline = [], []
        live_before = live_after = 0
        violation = rules.violation
        peak, peak_index = self.c.x[0], -1
        for t in range(n_ops):
            live_before += before[t]
            live_after += after[t]
            op_peak = self.op_peaks[t] + live_before
            peaks.append(op_peak)
            if op_peak > peak:
                peak, peak_index = op_peak, t
            if budget is not None and op_peak > budget:
                violation = Violation(
                    t,
                    str(ops[t]),
                    f"needs {op_peak} bytes while running, over the budget of {budget} bytes by "
                    f"{op_peak - budget}",
                )
                break
            if t < len(self.timeline):
                timeline.append(self.timeline[t] + live_after)
        return dataclasses.replace(
            rules,
            valid=violation is None,
            violation=violation,
            peak_bytes=peak,
            peak_index=peak_index,
            timeline=tuple(timeline),
            op_peaks=tuple(peaks),
            budget_bytes=budget,
        )

    def available(self, j: int) -> bool:
        return self.plain[j] or (j >= 1 and self.tape[j])

    def _check_drop(self, j: int) -> None:
        """Dropping the plain a[j] must not strand the live tape abar[j+1], which may hold it."""
        if j + 1 <= self.c.length and self.tape[j + 1] and not self.tape[j]:
            raise _Stop(
                f"cannot drop a[{j}] while the tape abar[{j + 1}] is live: the tape may hold a[{j}] "
                f"(it is stage {j + 1}'s input), so its memory would not be freed"
            )

    def _stage(self, op: FwdNoTape | FwdCheckpoint | FwdTape | Bwd) -> int:
        i = op.stage
        if not 1 <= i <= self.c.length:
            raise _Stop(f"stage {i} does not exist; this chain has stages 1..{self.c.length}")
        return i

    def _forward_checks(self, i: int) -> None:
        if self.done[i]:
            raise _Stop(f"stage {i} was already back-propagated by B({i}); it is not needed again")
        if not self.available(i - 1):
            raise _Stop(
                f"needs a[{i - 1}], which is not live (neither kept plain nor inside the tape "
                f"abar[{i - 1}]"
                + (
                    "; it is being prefetched, ready after this op"
                    if i - 1 in self.incoming
                    else ""
                )
                + ")"
            )

    def step(self, op: Op) -> None:
        # Long: the chain rules, one branch per op kind, kept together as the rules table in the
        # module docstring is.
        c = self.c
        if isinstance(op, (FwdNoTape, FwdCheckpoint)):
            i = self._stage(op)
            self._forward_checks(i)
            if isinstance(op, FwdNoTape):
                if i == 1:
                    raise _Stop(
                        "F_n(1) would drop the model input a[0], which the caller owns and B(1) "
                        "needs; use F_ck(1)"
                    )
                if not self.plain[i - 1]:
                    raise _Stop(
                        f"F_n({i}) would drop a[{i - 1}], but a[{i - 1}] is only held inside the "
                        f"tape abar[{i - 1}]; use F_ck({i})"
                    )
            if isinstance(op, FwdNoTape):
                self._check_drop(i - 1)
            if self.plain[i]:
                raise _Stop(f"a[{i}] is already live; computing it again wastes time and memory")
            self.account(self.index, self.mem + c.x[i] + c.ofn[i - 1])
            self.mem += self.own_x[i]
            self.times.append(c.uf[i - 1])
            self._copies(i, taped=False)
            self.plain[i] = True
            if isinstance(op, FwdNoTape):
                self.plain[i - 1] = False
                self.mem -= self.own_x[i - 1]
                self._drop_plain(i - 1)
        elif isinstance(op, FwdTape):
            i = self._stage(op)
            self._forward_checks(i)
            if self.tape[i]:
                raise _Stop(f"the tape abar[{i}] is already live")
            self.account(self.index, self.mem + c.xbar[i - 1] + c.of[i - 1])
            self.mem += self.own_xbar[i]
            self.times.append(c.uf[i - 1])
            self._copies(i, taped=True)
            self.tape[i] = True
        elif isinstance(op, Bwd):
            i = self._stage(op)
            if self.done[i]:
                raise _Stop(f"B({i}) already ran")
            if not self.tape[i]:
                raise _Stop(f"needs the tape abar[{i}]; run F_all({i}) first")
            if i < c.length and not self.grad[i]:
                raise _Stop(f"needs delta[{i}], which B({i + 1}) produces; run B({i + 1}) first")
            if not self.available(i - 1):
                raise _Stop(f"needs its input a[{i - 1}], which is not live")
            if i == c.length:
                # The loss creates the seed gradient delta[L] right before the first backward.
                self.grad[i] = True
                self.mem += c.delta[i]
            self.mem += c.delta[i - 1]
            self.account(self.index, self.mem + c.ob[i - 1])
            self.times.append(c.ub[i - 1])
            self.grad[i - 1] = True
            self.tape[i] = False
            self.grad[i] = False
            self.mem -= self.own_xbar[i] + c.delta[i]
            self._end_tape(i)
            if self.plain[i - 1]:
                self.plain[i - 1] = False
                self.mem -= self.own_x[i - 1]
                self._drop_plain(i - 1)
            self.done[i] = True
        elif isinstance(op, FreeActivation):
            j = op.index
            if not 0 <= j <= c.length:
                raise _Stop(f"a[{j}] does not exist; this chain has a[0..{c.length}]")
            if j == 0:
                raise _Stop("a[0] is the model input, owned by the caller; it cannot be freed")
            if not self.plain[j]:
                raise _Stop(f"a[{j}] is not live plain, so there is nothing to free")
            self._check_drop(j)
            self.plain[j] = False
            self.mem -= self.own_x[j]
            self._drop_plain(j)
            self.account(self.index, self.mem)
        else:
            raise _Stop(f"{type(op).__name__} is not a chain op")

    def _finish_rules(self) -> str | None:
        for i in range(self.c.length, 0, -1):
            if not self.done[i]:
                return f"the schedule ends before B({i}); the backward pass is incomplete"
        return None


class _GraphSim(_Sim):
    def __init__(
        self, graph: Graph, budget_bytes: int | None, link: HostLink | None = None
    ) -> None:
        super().__init__(budget_bytes, graph.store_all_time, link)
        self.g = graph
        self.live = [r != Role.OP for r in graph.role]
        self.count = [0] * graph.size
        self.mem = graph.budget_source_bytes
        self.on_host: set[int] = set()
        self.leaving: dict[int, float] = {}  # offloaded, device copy live: when the copy ends
        self.arriving: dict[int, float] = {}  # prefetched: when the copy ends

    def run(self, ops: tuple[Op, ...] | list[Op]) -> SimulationReport:
        report = super().run(ops)
        if self.link is None:
            return report
        return dataclasses.replace(report, stall_time=self.stall, host_peak_bytes=self.host_peak)

    def _arrived(self, v: int) -> None:
        """`v`'s prefetch is read (or freed): wait for it; its host copy is released."""
        self._wait(self.arriving.pop(v))
        self.on_host.discard(v)
        self._host(-self.g.out_bytes[v])

    def _copy(self, op: OffloadValue | PrefetchValue) -> None:
        g = self.g
        v = self._node(op.node)
        if self.link is None:
            raise _Stop(
                f"{op} copies to host memory, but no link was given; solve with link= (a "
                f"HostLink), or simulate a schedule that carries one"
            )
        if isinstance(op, OffloadValue):
            if not self.live[v] or v in self.arriving:
                raise _Stop(
                    f"node {v} ({g.names[v]}) is not live on the device: nothing to offload"
                )
            if v in self.on_host:
                raise _Stop(f"node {v} ({g.names[v]}) already has a copy on the host")
            self.on_host.add(v)
            self._host(g.out_bytes[v])
            self.leaving[v] = self._start_copy(g.out_bytes[v], "d2h")
            self.account(self.index, self.mem)
            return
        if v not in self.on_host or v in self.arriving:
            raise _Stop(f"node {v} ({g.names[v]}) has no copy on the host to prefetch")
        if self.live[v]:
            raise _Stop(f"node {v} ({g.names[v]}) is already live on the device")
        self.mem += g.out_bytes[v]
        self.account(self.index, self.mem)
        self.live[v] = True
        self.arriving[v] = self._start_copy(g.out_bytes[v], "h2d")

    def _node(self, v: int) -> int:
        if not 0 <= v < self.g.size:
            raise _Stop(f"node {v} does not exist; this graph has nodes 0..{self.g.size - 1}")
        if self.g.role[v] != Role.OP:
            raise _Stop(
                f"node {v} ({self.g.names[v]}) is an {self.g.role[v]}: it exists before the step "
                f"and is never computed or freed"
            )
        return v

    def step(self, op: Op) -> None:
        g = self.g
        if isinstance(op, (OffloadValue, PrefetchValue)):
            self._copy(op)
            return
        if isinstance(op, Compute):
            v = self._node(op.node)
            if self.live[v]:
                raise _Stop(f"node {v} ({g.names[v]}) is already live")
            for u in g.preds[v]:
                if not self.live[u]:
                    raise _Stop(f"needs the output of node {u} ({g.names[u]}), which is not live")
            for u in g.preds[v]:
                if u in self.arriving:
                    self._arrived(u)
            if self.count[v] and g.rng[v] == RngPolicy.FORBID_RECOMPUTE:
                raise _Stop(
                    f"node {v} ({g.names[v]}) is a random op without a saved RNG state; it may "
                    f"not be recomputed"
                )
            self.mem += g.out_bytes[v]
            self.account(self.index, self.mem)
            self.times.append(g.cost[v])
            self.clock += g.cost[v]
            self.live[v] = True
            self.count[v] += 1
        elif isinstance(op, Free):
            v = self._node(op.node)
            if not self.live[v]:
                raise _Stop(f"node {v} ({g.names[v]}) is not live, so there is nothing to free")
            if v in self.leaving:  # its device copy is read by the copy until it ends
                self._wait(self.leaving.pop(v))
            if v in self.arriving:
                self._arrived(v)
            self.live[v] = False
            self.mem -= g.out_bytes[v]
            self.account(self.index, self.mem)
        else:
            raise _Stop(f"{type(op).__name__} is not a graph op")

    def finish(self) -> str | None:
        for end in (*self.leaving.values(), *self.arriving.values()):
            self._wait(end)
        for v in self.g.ops:
            if self.count[v] == 0:
                return f"node {v} ({self.g.names[v]}) is never computed"
        return None
