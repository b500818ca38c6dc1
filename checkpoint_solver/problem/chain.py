"""The chain problem of Beaumont et al. (2019): a sequence of stages with heterogeneous costs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from checkpoint_solver.errors import InvalidProblemError
from checkpoint_solver.problem.states import ModelStates
from checkpoint_solver.units import MAX_BYTES

__all__ = ["COST_UNITS", "BoundaryValue", "Chain", "CostUnit"]

CostUnit = Literal["seconds", "flops", "abstract"]
COST_UNITS: tuple[str, ...] = ("seconds", "flops", "abstract")


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """A chain of ``L`` stages; stage ``i`` (1-based) maps activation ``a[i-1]`` to ``a[i]``.

    Field names follow Beaumont, Eyraud-Dubois, Herrmann, Joly, Shilova, "Optimal checkpointing for
    heterogeneous chains" (2019). All sizes are integers in bytes; times are in `cost_unit`. The
    per-stage tuples are 0-based in Python: ``uf[i-1]`` is the forward time of stage ``i``, while
    ``x`` has ``L + 1`` entries and ``x[i]`` is the size of ``a[i]`` (``x[0]`` is the model input).

    Attributes
    ----------
    uf : tuple[float, ...]
        Forward time of each stage (``L`` entries).
    ub : tuple[float, ...]
        Backward time of each stage (``L`` entries).
    x : tuple[int, ...]
        Bytes of each boundary activation ``a[0..L]`` (``L + 1`` entries). A boundary made of several
        tensors has their total size. The gradient ``delta[i]`` of ``a[i]`` has the same size.
    xbar : tuple[int, ...]
        Bytes of the tape ``abar[i]`` of each stage: everything autograd keeps for the stage's
        backward when it runs with grad, *including its output* ``a[i]`` and excluding its input
        (``L`` entries, each at least the matching ``x[i]``).
    of : tuple[int, ...]
        Transient extra bytes during the forward of each stage run with its tape (``F_all``),
        above the tape (``L`` entries).
    ob : tuple[int, ...]
        Transient extra bytes during the backward of each stage, above the gradient
        ``delta[i-1]`` it makes (``L`` entries).

        The three transients are what a stage's op adds at its peak beyond the sizes the rules
        name, so they may be negative where the rules name bytes the op does not allocate: a
        value that only passes through a stage (a skip) is part of its output ``a[i]`` but is not
        made again, and the gradient of a value a later stage also reads already exists when
        ``B(i)`` runs. What an op adds in all cannot be negative: ``x[i] + ofn[i]``,
        ``xbar[i] + of[i]`` and ``x[i-1] + ob[i]`` are ``>= 0``.
    cost_unit : {"seconds", "flops", "abstract"}
        What `uf` and `ub` count. Revolve's unit is one forward step ("abstract").
    name : str
        Free text, not part of the fingerprint.
    ofn : tuple[int, ...]
        Transient extra bytes during the forward of each stage run without its tape (``F_n``,
        ``F_ck``), above its output (``L`` entries). A forward that keeps no tape frees what it
        would save as it goes, so its transient differs from the taped one (an attention's score
        matrix is kept in the tape but is a transient without it). Defaults to `of`.
    delta : tuple[int, ...]
        Bytes of activation gradients the backward holds between ``B(i+1)`` and ``B(i)``: the
        gradient ``delta[i]`` (``L + 1`` entries; ``delta[L]`` is the loss's seed gradient).
        Defaults to `x`; measured, it differs where a gradient is a view of a larger one (the
        backward of a ``torch.stack`` hands every input a view of one buffer, freed with the last
        of them) or is never made (an input that needs no gradient).
    states : ModelStates | None
        The step's model states (parameters, gradients per stage, optimizer state), for
        whole-step budgets (`checkpoint_solver.problem.states`); not part of the fingerprint:
        they describe the training setup, not the model's graph. None: activations only.
    values : tuple[BoundaryValue, ...]
        The tensors that make up the boundaries, each with the stage that makes it, the stages
        that read it and the stages whose tapes save it (a value crossing several cuts is a skip
        connection, a mask, an encoder's output, an RNN's collected outputs). Each is counted in
        every ``x[k]`` and ``xbar[k]`` it crosses. With them the simulator counts each copy of a
        value once, while something holds it (see `checkpoint_solver.simulation`); solvers that
        add up boundaries over-count, never under. Empty by default: boundaries are opaque.

    Examples
    --------
    >>> c = Chain(uf=(1.0, 2.0), ub=(2.0, 4.0), x=(8, 8, 4), xbar=(16, 4), of=(0, 0), ob=(0, 0))
    >>> c.length, c.is_uniform
    (2, False)
    """

    uf: tuple[float, ...]
    ub: tuple[float, ...]
    x: tuple[int, ...]
    xbar: tuple[int, ...]
    of: tuple[int, ...]
    ob: tuple[int, ...]
    cost_unit: CostUnit = "seconds"
    name: str = ""
    ofn: tuple[int, ...] = None  # type: ignore[assignment]  # None: the same as `of`
    delta: tuple[int, ...] = None  # type: ignore[assignment]  # None: the same as `x`
    values: tuple[BoundaryValue, ...] = ()
    states: ModelStates | None = None
    kind: Literal["chain"] = field(default="chain", init=False)

    def __post_init__(self) -> None:
        # Long: every field's validation in order, each with an error naming the field; split, the
        # order the checks rely on would be implicit.
        if self.ofn is None:
            object.__setattr__(self, "ofn", self.of)
        if self.delta is None:
            object.__setattr__(self, "delta", self.x)
        for fname in ("uf", "ub", "x", "xbar", "of", "ob", "ofn", "delta"):
            value = getattr(self, fname)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise InvalidProblemError(
                    f"Chain.{fname} must be a sequence of numbers, got {type(value).__name__}"
                )
            object.__setattr__(self, fname, tuple(value))
        length = len(self.uf)
        expected = {
            "uf": length,
            "ub": length,
            "x": length + 1,
            "xbar": length,
            "of": length,
            "ob": length,
            "ofn": length,
            "delta": length + 1,
        }
        for fname, n in expected.items():
            if len(getattr(self, fname)) != n:
                raise InvalidProblemError(
                    f"Chain.{fname} has {len(getattr(self, fname))} entries but a chain of "
                    f"{length} stages (len(uf)) needs {n}"
                    + (" (one per boundary activation a[0..L])" if fname == "x" else "")
                )
        for fname in ("uf", "ub"):
            for i, v in enumerate(getattr(self, fname)):
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise InvalidProblemError(
                        f"Chain.{fname} of stage {i + 1} is {v!r}; times must be numbers"
                    )
                if not math.isfinite(v) or v < 0:
                    raise InvalidProblemError(
                        f"Chain.{fname} of stage {i + 1} is {v!r}; times must be finite and >= 0"
                    )
            object.__setattr__(self, fname, tuple(float(v) for v in getattr(self, fname)))
        for fname in ("x", "xbar", "of", "ob", "ofn", "delta"):
            ints = []
            for i, v in enumerate(getattr(self, fname)):
                where = f"a[{i}]" if fname in ("x", "delta") else f"stage {i + 1}"
                if isinstance(v, bool) or not isinstance(v, int):
                    if isinstance(v, float) and v.is_integer():
                        v = int(v)
                    else:
                        raise InvalidProblemError(
                            f"Chain.{fname} of {where} is {v!r}; sizes must be integers (bytes)"
                        )
                if v < 0 and fname in ("x", "xbar", "delta"):
                    raise InvalidProblemError(
                        f"Chain.{fname} of {where} is {v}; sizes must be >= 0 bytes"
                    )
                ints.append(int(v))
            object.__setattr__(self, fname, tuple(ints))
        total = sum(
            abs(v) for f in ("x", "xbar", "of", "ob", "ofn", "delta") for v in getattr(self, f)
        )
        if total > MAX_BYTES:
            raise InvalidProblemError(
                f"Chain sizes add up to {total} bytes, more than {MAX_BYTES} (2**60, 1 EiB), the "
                f"most the solvers represent in machine integers; give sizes in bytes"
            )
        if not math.isfinite(math.fsum(self.uf) + math.fsum(self.ub)):
            raise InvalidProblemError(
                "Chain times add up to infinity; give times in seconds (or smaller units)"
            )
        for i in range(length):
            if self.xbar[i] < self.x[i + 1]:
                raise InvalidProblemError(
                    f"Chain.xbar of stage {i + 1} is {self.xbar[i]} bytes, less than its output "
                    f"a[{i + 1}] ({self.x[i + 1]} bytes); the tape includes the stage output, so "
                    f"xbar[i] >= x[i] must hold"
                )
        for i in range(length):
            for fname, base, what in (
                ("ofn", self.x[i + 1], f"x[{i + 1}]"),
                ("of", self.xbar[i], f"xbar[{i + 1}]"),
                ("ob", self.delta[i], f"delta[{i}]"),
            ):
                if getattr(self, fname)[i] < -base:
                    raise InvalidProblemError(
                        f"Chain.{fname} of stage {i + 1} is {getattr(self, fname)[i]}, below "
                        f"-{what} ({-base}): an op cannot free more than it makes at its peak; "
                        f"transients may be negative only down to minus the size beside them"
                    )
        object.__setattr__(self, "values", _check_values(self.values, self.x, self.xbar))
        if self.states is not None:
            if not isinstance(self.states, ModelStates):
                object.__setattr__(self, "states", ModelStates.from_dict(self.states))
            if len(self.states.grads) != length:
                raise InvalidProblemError(
                    f"Chain.states.grads has {len(self.states.grads)} entries but the chain has "
                    f"{length} stages: one parameter-gradient size per stage"
                )
        if self.cost_unit not in COST_UNITS:
            raise InvalidProblemError(
                f"Chain.cost_unit is {self.cost_unit!r}; use one of {', '.join(COST_UNITS)}"
            )

    @property
    def length(self) -> int:
        """Number of stages ``L``."""
        return len(self.uf)

    @property
    def is_uniform(self) -> bool:
        """True when every stage has the same costs and sizes (the case Revolve solves)."""
        return (
            all(len(set(getattr(self, f))) <= 1 for f in ("uf", "ub", "xbar", "of", "ob", "ofn"))
            and self.delta == self.x
            and not self.values
            and len(set(self.x[1:])) <= 1
        )

    @property
    def store_all_time(self) -> float:
        """Compute time with no recomputation: the sum of ``uf + ub`` over stages."""
        return math.fsum(self.uf) + math.fsum(self.ub)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready body (without the format header)."""
        return {
            "kind": "chain",
            "name": self.name,
            "cost_unit": self.cost_unit,
            "uf": list(self.uf),
            "ub": list(self.ub),
            "x": list(self.x),
            "xbar": list(self.xbar),
            "of": list(self.of),
            "ob": list(self.ob),
            **({"ofn": list(self.ofn)} if self.ofn != self.of else {}),
            **({"delta": list(self.delta)} if self.delta != self.x else {}),
            **({"values": [c.to_list() for c in self.values]} if self.values else {}),
            **({"states": self.states.to_dict()} if self.states is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chain:
        """Build a chain from `to_dict` output."""
        return cls(
            uf=tuple(data["uf"]),
            ub=tuple(data["ub"]),
            x=tuple(data["x"]),
            xbar=tuple(data["xbar"]),
            of=tuple(data["of"]),
            ob=tuple(data["ob"]),
            ofn=tuple(data["ofn"]) if data.get("ofn") is not None else None,  # type: ignore[arg-type]
            delta=tuple(data["delta"]) if data.get("delta") is not None else None,  # type: ignore[arg-type]
            cost_unit=data.get("cost_unit", "seconds"),
            name=data.get("name", ""),
            values=tuple(BoundaryValue.from_list(c) for c in data.get("values") or ()),
            states=(
                ModelStates.from_dict(data["states"]) if data.get("states") is not None else None
            ),
        )


@dataclass(frozen=True, slots=True)
class BoundaryValue:
    """One tensor (storage) of a chain's boundaries.

    Made by stage `producer`'s forward and read by the forwards of `readers` (ascending, each
    after `producer`), so it is part of ``a[producer] .. a[readers[-1] - 1]``; `saved` are the
    stages among the producer and the readers whose tape holds it (autograd saved it there);
    `held` is the last stage through whose forward the model's own code holds it (a variable
    still naming it, a container's call keeping its argument until it returns), when that is
    after its last reader (0 otherwise). It is part of the boundaries up to there.
    """

    nbytes: int
    producer: int
    readers: tuple[int, ...]
    saved: tuple[int, ...] = ()
    held: int = 0

    @property
    def last(self) -> int:
        """The last stage that reads it (its producer when no later stage does)."""
        return self.readers[-1] if self.readers else self.producer

    @property
    def until(self) -> int:
        """The last stage whose forward it lives through in the model's own forward."""
        return max(self.held, self.last)

    def to_list(self) -> list[Any]:
        out = [self.nbytes, self.producer, list(self.readers), list(self.saved)]
        return [*out, self.held] if self.held else out

    @classmethod
    def from_list(cls, value: Any) -> BoundaryValue:
        if isinstance(value, BoundaryValue):
            return value
        if (
            not isinstance(value, (list, tuple))
            or len(value) not in (4, 5)
            or not all(isinstance(v, (list, tuple)) for v in value[2:4])
        ):
            raise InvalidProblemError(
                f"Chain.values entries are [bytes, producer, [readers], [saved]] or [bytes, "
                f"producer, [readers], [saved], held], got {value!r}"
            )
        held = value[4] if len(value) == 5 else 0
        return cls(value[0], value[1], tuple(value[2]), tuple(value[3]), held)


def _check_values(
    values: Any, x: tuple[int, ...], xbar: tuple[int, ...]
) -> tuple[BoundaryValue, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InvalidProblemError(
            f"Chain.values must be a sequence of values, got {type(values).__name__}"
        )
    length = len(xbar)
    out = []
    crossing = [0] * (length + 1)
    for n, c in enumerate(values):
        c = BoundaryValue.from_list(c)
        ints = (c.nbytes, c.producer, *c.readers, *c.saved, c.held)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in ints):
            raise InvalidProblemError(f"Chain.values[{n}] holds a non-integer: {c.to_list()}")
        if c.nbytes < 0 or not 1 <= c.producer < length or not (c.readers or c.held):
            raise InvalidProblemError(
                f"Chain.values[{n}] needs bytes >= 0, a producer stage in 1..{length - 1} and a "
                f"reader or a later stage it is held until, got {c.to_list()}"
            )
        if list(c.readers) != sorted(set(c.readers)) or not (
            not c.readers or (c.producer < c.readers[0] and c.readers[-1] <= length)
        ):
            raise InvalidProblemError(
                f"Chain.values[{n}]: readers must ascend, without repeats, in "
                f"{c.producer + 1}..{length} (after the producer), got {list(c.readers)}"
            )
        if any(s not in (c.producer, *c.readers) for s in c.saved):
            raise InvalidProblemError(
                f"Chain.values[{n}]: saved stages must be the producer or readers, got "
                f"{list(c.saved)}"
            )
        if not 0 <= c.held <= length:
            raise InvalidProblemError(
                f"Chain.values[{n}]: held must be a stage in 1..{length}, or 0, got {c.held}"
            )
        held = c.held if c.held > c.last else 0
        c = BoundaryValue(c.nbytes, c.producer, tuple(c.readers), tuple(sorted(set(c.saved))), held)
        for k in range(c.producer, c.until):
            crossing[k] += c.nbytes
        out.append(c)
    for k in range(1, length + 1):
        if crossing[k] > x[k] or (k <= length and k >= 1 and crossing[k] > xbar[k - 1]):
            raise InvalidProblemError(
                f"Chain.values values crossing a[{k}] add up to {crossing[k]} bytes, more than "
                f"x[{k}] = {x[k]} (or its tape): a boundary holds every value that crosses it"
            )
    return tuple(out)
