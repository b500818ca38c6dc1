"""The chain problem of Beaumont et al. (2019): a sequence of stages with heterogeneous costs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from checkpoint_solver.errors import InvalidProblemError

__all__ = ["COST_UNITS", "Chain", "CostUnit"]

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
        Transient extra bytes during the forward of each stage (``L`` entries).
    ob : tuple[int, ...]
        Transient extra bytes during the backward of each stage (``L`` entries).
    cost_unit : {"seconds", "flops", "abstract"}
        What `uf` and `ub` count. Revolve's unit is one forward step ("abstract").
    name : str
        Free text, not part of the fingerprint.

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
    kind: Literal["chain"] = field(default="chain", init=False)

    def __post_init__(self) -> None:
        for fname in ("uf", "ub", "x", "xbar", "of", "ob"):
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
        for fname in ("x", "xbar", "of", "ob"):
            ints = []
            for i, v in enumerate(getattr(self, fname)):
                where = f"a[{i}]" if fname == "x" else f"stage {i + 1}"
                if isinstance(v, bool) or not isinstance(v, int):
                    if isinstance(v, float) and v.is_integer():
                        v = int(v)
                    else:
                        raise InvalidProblemError(
                            f"Chain.{fname} of {where} is {v!r}; sizes must be integers (bytes)"
                        )
                if v < 0:
                    raise InvalidProblemError(
                        f"Chain.{fname} of {where} is {v}; sizes must be >= 0 bytes"
                    )
                ints.append(int(v))
            object.__setattr__(self, fname, tuple(ints))
        for i in range(length):
            if self.xbar[i] < self.x[i + 1]:
                raise InvalidProblemError(
                    f"Chain.xbar of stage {i + 1} is {self.xbar[i]} bytes, less than its output "
                    f"a[{i + 1}] ({self.x[i + 1]} bytes); the tape includes the stage output, so "
                    f"xbar[i] >= x[i] must hold"
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
            all(len(set(getattr(self, f))) <= 1 for f in ("uf", "ub", "xbar", "of", "ob"))
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
            cost_unit=data.get("cost_unit", "seconds"),
            name=data.get("name", ""),
        )
