"""What the executor needs to know about a chain schedule before it runs one step. Torch-free.

The executor replays a schedule in two phases (see `checkpoint_solver.runtime.executor`): the
model's own forward, which must run every stage once, in order, and the backward, where autograd
reaches the stages in the order ``B(L), ..., B(1)`` and the executor runs the ops the schedule puts
between two ``B``s. `ReplayPlan` checks that a schedule has that shape and precomputes which
stages are ever recomputed and which outputs of a taped forward must be kept for a later forward.

Examples
--------
>>> from checkpoint_solver.schedule.ops import parse_op
>>> ops = [parse_op(s) for s in "F_ck(1) F_n(2) F_all(3) B(3) F_all(1) F_all(2) B(2) B(1)".split()]
>>> plan = ReplayPlan.from_ops(ops, 3)
>>> [k.value for k in plan.forward_kinds], sorted(plan.replayed), plan.backward_start
(['ck', 'n', 'all'], [1, 2], 3)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from checkpoint_solver.errors import InvalidScheduleError
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

__all__ = ["Forward", "ReplayPlan", "forward_kind"]


class Forward(str, enum.Enum):
    """How a chain forward op runs its stage: without tape keeping nothing (``F_n``), without
    tape keeping its input as a checkpoint (``F_ck``), or with its tape (``F_all``)."""

    NO_TAPE = "n"
    CHECKPOINT = "ck"
    TAPE = "all"


_KINDS = {FwdNoTape: Forward.NO_TAPE, FwdCheckpoint: Forward.CHECKPOINT, FwdTape: Forward.TAPE}


def forward_kind(op: Op) -> Forward | None:
    """The `Forward` kind of a chain forward op, else None."""
    return _KINDS.get(type(op))


@dataclass(frozen=True)
class ReplayPlan:
    """A chain schedule checked for replay.

    Attributes
    ----------
    ops : tuple[Op, ...]
        The schedule's ops.
    n : int
        Number of stages.
    forward_kinds : tuple[Forward, ...]
        The forward phase's op per stage, stage 1 first.
    backward_start : int
        Index of the first ``B`` (always ``B(n)``) in `ops`.
    replayed : frozenset[int]
        Stages the schedule runs forward again after the forward phase.
    keep_taped : frozenset[int]
        Stages ``i`` whose output ``a[i]``, made by ``F_all(i)``, is read by a later forward of
        stage ``i + 1`` while no plain copy of ``a[i]`` is live: the executor keeps it until
        ``B(i)``.
    trivial : bool
        Every stage taped in the forward phase and nothing recomputed: plain autograd.
    beside : tuple[int, ...]
        Per op, the index of the first compute op (``F``, ``B``) after it (``len(ops)`` if
        none): the op an offload's or a prefetch's copy runs beside.
    """

    ops: tuple[Op, ...]
    n: int
    forward_kinds: tuple[Forward, ...]
    backward_start: int
    replayed: frozenset[int]
    keep_taped: frozenset[int]
    beside: tuple[int, ...] = ()

    @property
    def trivial(self) -> bool:
        return not self.replayed and all(k is Forward.TAPE for k in self.forward_kinds)

    @classmethod
    def from_ops(cls, ops: Sequence[Op], n: int) -> ReplayPlan:
        """Check that `ops` can be replayed on a chain of `n` stages.

        Raises
        ------
        InvalidScheduleError
            Graph ops, a forward phase that does not run stages ``1..n`` once each in order
            and end with ``F_all(n)``, or a backward phase whose ``B``s are not ``B(n)..B(1)``
            once each or that runs a stage forward after its ``B`` (the simulator rejects all of
            these too; the message names the op).
        """
        # Long: one pass over the ops that fills every table of the replay plan together.
        ops = tuple(ops)
        kinds: list[Forward] = []
        i = 0
        while i < len(ops) and not isinstance(ops[i], Bwd):
            op = ops[i]
            kind = forward_kind(op)
            if kind is None and not isinstance(op, (FreeActivation, Offload, Prefetch)):
                raise InvalidScheduleError(
                    i,
                    str(op),
                    "not a chain op; graph schedules are not replayed by the chain executor",
                )
            if kind is not None:
                stage = op.stage  # type: ignore[union-attr]
                if stage != len(kinds) + 1:
                    raise InvalidScheduleError(
                        i,
                        str(op),
                        f"the executor replays the forward phase as the model runs it: "
                        f"stage {len(kinds) + 1} comes next (each stage once, in order, before the "
                        f"first B)",
                    )
                kinds.append(kind)
            i += 1
        if len(kinds) != n:
            raise InvalidScheduleError(
                i,
                str(ops[i]) if i < len(ops) else None,
                f"the forward phase runs {len(kinds)} of the {n} stages before the first B",
            )
        if kinds[-1] is not Forward.TAPE:
            raise InvalidScheduleError(
                i,
                str(ops[i]) if i < len(ops) else None,
                f"the last stage (the loss) must be taped (F_all({n})) in the forward phase: the "
                f"executor never recomputes it",
            )
        backward_start = i
        expected_b = n
        replayed: set[int] = set()
        plain = {0}
        taped: set[int] = set()
        keep_taped: set[int] = set()
        done_b: set[int] = set()
        landing: list[tuple[str, int]] = []  # copies that end after the next compute op
        for j, op in enumerate(ops):
            kind = forward_kind(op)
            if isinstance(op, (Offload, Prefetch)):
                landing.append(("off" if isinstance(op, Offload) else "pre", op.index))
                continue
            if isinstance(op, (Bwd, FwdNoTape, FwdCheckpoint, FwdTape)) and landing:
                land_now = list(landing)
                landing = []
            else:
                land_now = []
            if isinstance(op, Bwd):
                if j < backward_start or op.stage != expected_b:
                    raise InvalidScheduleError(j, str(op), f"B({expected_b}) comes next")
                if op.stage not in taped:
                    raise InvalidScheduleError(
                        j,
                        str(op),
                        f"stage {op.stage} has no tape: F_all({op.stage}) must run before its B",
                    )
                expected_b -= 1
                done_b.add(op.stage)
                if op.stage > 1:
                    plain.discard(op.stage - 1)
                taped.discard(op.stage)
            elif isinstance(op, FreeActivation):
                plain.discard(op.index)
            elif kind is not None:
                stage = op.stage  # type: ignore[union-attr]
                if stage in done_b or stage > expected_b:
                    raise InvalidScheduleError(j, str(op), f"stage {stage} runs forward after B")
                if j > backward_start:
                    replayed.add(stage)
                    src = stage - 1
                    if src not in plain and src in taped:
                        keep_taped.add(src)
                if kind is Forward.TAPE:
                    taped.add(stage)
                else:
                    plain.add(stage)
                    if kind is Forward.NO_TAPE and stage > 1:
                        plain.discard(stage - 1)
            else:
                raise InvalidScheduleError(j, str(op), "not a chain op")
            for what, index in land_now:
                (plain.discard if what == "off" else plain.add)(index)
        if expected_b != 0:
            raise InvalidScheduleError(len(ops), None, f"B({expected_b}) never runs")
        if n in replayed:
            raise InvalidScheduleError(
                backward_start,
                str(ops[backward_start]),
                "the last stage (the loss) is recomputed; the executor never recomputes it",
            )
        compute = [k for k, op in enumerate(ops) if isinstance(op, (Bwd, *_KINDS))]
        beside = tuple(next((k for k in compute if k > j), len(ops)) for j in range(len(ops)))
        return cls(
            ops,
            n,
            tuple(kinds),
            backward_start,
            frozenset(replayed),
            frozenset(keep_taped),
            beside,
        )
