"""Chains at every input size: sizes and times fitted over profiles at a few shapes.

One profile describes one input shape. Variable-length training (fine-tuning batches padded to
their longest sequence, a curriculum over context lengths, a batch size that changes with it)
calls the model at many shapes. The chains of one model profiled at a few sizes of its varying
dimensions (the sequence length, the batch, or both) have the same structure and sizes that grow
with them: a projection's output as ``B S``, attention's score matrix as ``B S^2``, a rotary
table or a relative position bias not with the batch at all. `ChainFit` fits every size and time
as a polynomial in the sizes: in each dimension of degree one less than the number of distinct
sizes profiled in it, at most two, with every product of those terms (one dimension:
``a + b n + c n^2``, exact through three profiles; batch and length profiled at 2 x 3 shapes:
``1, S, S^2, B, B S, B S^2``, exact through the six). It gives the chain at any size
(`ChainFit.at`), each size rounded up. A schedule solved on ``fit.at(edge)`` holds its promise
for every size no larger in any dimension whose sizes do not exceed the edge's (they grow with
each dimension, checked on the profiled points), which is what
`checkpoint_solver.buckets.solve_buckets` solves per bucket and
`checkpoint_solver.runtime.buckets` replays, picking the bucket per call.

Fitting needs the chains to agree on everything but the numbers: the stage count, which stages
make and read each boundary value, whether model states are known; and, with several
dimensions, enough shapes to fix every term (every combination of the sizes profiled per
dimension does).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from checkpoint_solver.errors import InvalidProblemError
from checkpoint_solver.problem.chain import BoundaryValue, Chain

__all__ = ["ChainFit"]

_SIZES = ("x", "xbar", "of", "ob", "ofn", "delta")
_TIMES = ("uf", "ub")


def _up(v: float) -> int:
    """A fitted size in whole bytes, rounded up (a profiled size's float error left out)."""
    return math.ceil(v - 1e-6)


def _structure(chain: Chain) -> tuple[Any, ...]:
    values = tuple((v.producer, v.readers, v.saved, v.held) for v in chain.values)
    states = None
    if chain.states is not None:
        st = chain.states
        states = (st.accumulate, len(st.grads))
    return (chain.length, values, states, chain.cost_unit)


Size = int | tuple[int, ...]


def _point(n: Size, dims: int | None = None) -> tuple[int, ...]:
    """A size as a tuple of its dimensions' sizes (an int is one dimension)."""
    p = (n,) if isinstance(n, int) and not isinstance(n, bool) else tuple(n)  # type: ignore[arg-type]
    if (
        not p
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in p)
        or (dims is not None and len(p) != dims)
    ):
        want = "an integer >= 1" if dims in (None, 1) else f"{dims} integers >= 1"
        raise InvalidProblemError(f"the input size must be {want}, got {n!r}")
    return p


@dataclass(frozen=True)
class ChainFit:
    """Every number of a chain as a polynomial in the input's varying sizes (see the module
    notes).

    Attributes
    ----------
    sizes : tuple[int | tuple[int, ...], ...]
        The sizes of the profiled chains, ascending: ints for one varying dimension, tuples
        (one size per dimension) for several.
    chains : tuple[Chain, ...]
        The profiled chains, in the same order.
    """

    sizes: tuple[Size, ...]
    chains: tuple[Chain, ...]

    @property
    def dims(self) -> int:
        """How many dimensions vary."""
        return len(_point(self.sizes[0]))

    @property
    def points(self) -> tuple[tuple[int, ...], ...]:
        return tuple(_point(n) for n in self.sizes)

    @classmethod
    def of(cls, chains: Sequence[Chain], sizes: Sequence[Size]) -> ChainFit:
        """Fit over chains profiled at `sizes` (ints for one varying dimension: two or three
        distinct values, more fitted by least squares; tuples for several, enough of them to fix
        every term of the fit: every combination of two or three sizes per dimension).

        Raises
        ------
        InvalidProblemError
            Too few distinct sizes for the fit, chains that differ in structure (stage count,
            boundary values, model states), or sizes that do not grow with the input.
        """
        points = [_point(n) for n in sizes]
        if (
            len(chains) != len(points)
            or len(set(points)) != len(points)
            or len(points) < 2
            or len({len(p) for p in points}) != 1
        ):
            raise InvalidProblemError(
                f"fitting chains over input sizes needs two or more chains at distinct sizes, "
                f"got {len(chains)} chains at sizes {list(sizes)}"
            )
        order = sorted(range(len(points)), key=lambda k: points[k])
        chains = [chains[k] for k in order]
        points = [points[k] for k in order]
        first = _structure(chains[0])
        for c, p in zip(chains[1:], points[1:], strict=True):
            if _structure(c) != first:
                raise InvalidProblemError(
                    f"the chain profiled at size {_shown(p)} differs in structure from the one "
                    f"at {_shown(points[0])} (stages, boundary values or model states): a model "
                    f"whose stages change with the input size cannot share one fit; profile each "
                    f"size alone"
                )
        for name in ("x", "xbar"):
            rows = [np.asarray(getattr(c, name), dtype=np.float64) for c in chains]
            for i, j in itertools.permutations(range(len(points)), 2):
                below = all(a <= b for a, b in zip(points[i], points[j], strict=True))
                if below and np.any(rows[j] < rows[i]):
                    raise InvalidProblemError(
                        f"Chain.{name} shrinks as the input grows from {_shown(points[i])} to "
                        f"{_shown(points[j])}: the fit promises memory per bucket only for sizes "
                        f"that grow with the input"
                    )
        fit = cls(tuple(_shown(p) for p in points), tuple(chains))
        basis = fit._basis(np.asarray(points, dtype=np.float64))
        if np.linalg.matrix_rank(basis) < basis.shape[1]:
            per = [sorted({p[d] for p in points}) for d in range(len(points[0]))]
            raise InvalidProblemError(
                f"the sizes profiled ({[_shown(p) for p in points]}) do not fix the fit's "
                f"{basis.shape[1]} terms (the sizes per dimension {per}, with their products): "
                f"profile every combination of them"
            )
        return fit

    def _degrees(self) -> tuple[int, ...]:
        pts = self.points
        return tuple(min(2, len({p[d] for p in pts}) - 1) for d in range(self.dims))

    def _basis(self, at: np.ndarray) -> np.ndarray:
        """Every product of the dimensions' powers up to their degrees, at the rows of `at`."""
        cols = []
        for powers in itertools.product(*(range(k + 1) for k in self._degrees())):
            cols.append(np.prod([at[:, d] ** e for d, e in enumerate(powers)], axis=0))
        return np.stack(cols, axis=1)

    def _eval(self, rows: Sequence[Sequence[float]], n: tuple[int, ...]) -> list[float]:
        """Per column of `rows` (one row per profiled chain), the fit's value at `n`."""
        basis = self._basis(np.asarray(self.points, dtype=np.float64))
        coef, *_ = np.linalg.lstsq(basis, np.asarray(rows, dtype=np.float64), rcond=None)
        return list(self._basis(np.asarray([n], dtype=np.float64))[0] @ coef)

    def at(self, n: Size) -> Chain:
        """The chain at size `n` (an int for one varying dimension, a tuple of one size per
        dimension for several): each size the fit's value rounded up (exact at a profiled
        size), times clipped at 0, the chain rules' bounds kept (a tape holds its output)."""
        point = _point(n, self.dims)
        if point in self.points:
            return self.chains[self.points.index(point)]
        base = self.chains[0]
        fields: dict[str, Any] = {}
        for name in _TIMES:
            fields[name] = tuple(
                max(0.0, v) for v in self._eval([getattr(c, name) for c in self.chains], point)
            )
        for name in _SIZES:
            fields[name] = tuple(
                _up(v) for v in self._eval([getattr(c, name) for c in self.chains], point)
            )
        x = [max(0, v) for v in fields["x"]]
        xbar = [max(v, x[i + 1]) for i, v in enumerate(fields["xbar"])]
        delta = [max(0, v) for v in fields["delta"]]
        of = [max(v, -xbar[i]) for i, v in enumerate(fields["of"])]
        ofn = [max(v, -x[i + 1]) for i, v in enumerate(fields["ofn"])]
        ob = [max(v, -delta[i]) for i, v in enumerate(fields["ob"])]
        values: tuple[BoundaryValue, ...] = ()
        if base.values:
            nbytes = self._eval([[v.nbytes for v in c.values] for c in self.chains], point)
            values = tuple(
                BoundaryValue(max(0, _up(b)), v.producer, v.readers, v.saved, v.held)
                for b, v in zip(nbytes, base.values, strict=True)
            )
            # A boundary holds every value crossing it.
            crossing = [0] * len(x)
            for v in values:
                for k in range(v.producer, v.until):
                    crossing[k] += v.nbytes
            x = [max(a, c) for a, c in zip(x, crossing, strict=True)]
            xbar = [max(b, crossing[i + 1], x[i + 1]) for i, b in enumerate(xbar)]
        states = None
        if base.states is not None:
            rows = [
                [
                    c.states.params,  # type: ignore[union-attr]
                    c.states.optimizer,  # type: ignore[union-attr]
                    c.states.step,  # type: ignore[union-attr]
                    *c.states.grads,  # type: ignore[union-attr]
                ]
                for c in self.chains
            ]
            got = [max(0, _up(v)) for v in self._eval(rows, point)]
            states = dataclasses.replace(
                base.states,
                params=got[0],
                optimizer=got[1],
                step=got[2],
                grads=tuple(got[3:]),
                grad_extra=(),
                grads_done=(),
            )
        return dataclasses.replace(
            base,
            uf=fields["uf"],
            ub=fields["ub"],
            x=tuple(x),
            xbar=tuple(xbar),
            of=tuple(of),
            ofn=tuple(ofn),
            ob=tuple(ob),
            delta=tuple(delta),
            values=values,
            states=states,
            name=f"{base.name} at size {_shown(point)}",
        )


def _shown(p: tuple[int, ...]) -> Size:
    """A point as the user gives it: an int for one dimension."""
    return p[0] if len(p) == 1 else p
