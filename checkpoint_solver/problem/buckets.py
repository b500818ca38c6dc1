"""Chains at every input size: sizes and times fitted over profiles at two or three shapes.

One profile describes one input shape. Variable-length training (fine-tuning batches padded to
their longest sequence, a curriculum over context lengths) calls the model at many shapes. The
chains of one model profiled at a few values ``n`` of its one varying dimension (the sequence
length, or the batch) have the same structure and sizes that grow with ``n``: a projection's
output linearly, attention's score matrix quadratically. `ChainFit` fits every size and time as
``a + b n + c n^2`` (exactly through three profiles; ``c = 0`` through two) and gives the chain at
any ``n`` (`ChainFit.at`), with each size rounded up. A schedule solved on ``fit.at(edge)`` holds
its promise for every ``n <= edge`` whose sizes do not exceed the edge's (they grow with ``n``,
checked on the profiled points), which is what `checkpoint_solver.solvers.solve_buckets` solves
per bucket and `checkpoint_solver.runtime.buckets` replays, picking the bucket per call.

Fitting needs the chains to agree on everything but the numbers: the stage count, which stages
make and read each boundary value, whether model states are known.
"""

from __future__ import annotations

import dataclasses
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


@dataclass(frozen=True)
class ChainFit:
    """Every number of a chain as ``a + b n + c n^2`` over the varying dimension ``n``.

    Attributes
    ----------
    sizes : tuple[int, ...]
        The ``n`` of the profiled chains, ascending.
    chains : tuple[Chain, ...]
        The profiled chains, in the same order.
    """

    sizes: tuple[int, ...]
    chains: tuple[Chain, ...]

    @classmethod
    def of(cls, chains: Sequence[Chain], sizes: Sequence[int]) -> ChainFit:
        """Fit over chains profiled at `sizes` (two or three distinct values of the varying
        dimension; more are fitted by least squares).

        Raises
        ------
        InvalidProblemError
            Fewer than two distinct sizes, or chains that differ in structure (stage count,
            boundary values, model states), or sizes that do not grow with ``n``.
        """
        if len(chains) != len(sizes) or len(set(sizes)) != len(sizes) or len(sizes) < 2:
            raise InvalidProblemError(
                f"fitting chains over input sizes needs two or more chains at distinct sizes, "
                f"got {len(chains)} chains at sizes {list(sizes)}"
            )
        order = sorted(range(len(sizes)), key=lambda k: sizes[k])
        chains = [chains[k] for k in order]
        sizes = [int(sizes[k]) for k in order]
        first = _structure(chains[0])
        for c, n in zip(chains[1:], sizes[1:], strict=True):
            if _structure(c) != first:
                raise InvalidProblemError(
                    f"the chain profiled at size {n} differs in structure from the one at "
                    f"{sizes[0]} (stages, boundary values or model states): a model whose stages "
                    f"change with the input size cannot share one fit; profile each size alone"
                )
        for name in ("x", "xbar"):
            rows = np.array([getattr(c, name) for c in chains], dtype=np.float64)
            if np.any(np.diff(rows, axis=0) < 0):
                raise InvalidProblemError(
                    f"Chain.{name} shrinks as the input grows between the profiled sizes "
                    f"{sizes}: the fit promises memory per bucket only for sizes that grow with "
                    f"the input"
                )
        return cls(tuple(sizes), tuple(chains))

    def _coef(self, rows: Sequence[Sequence[float]]) -> np.ndarray:
        """Per column, ``(a, b, c)`` through the profiled points."""
        n = np.asarray(self.sizes, dtype=np.float64)
        degree = min(2, len(n) - 1)
        basis = np.vander(n, degree + 1, increasing=True)
        coef, *_ = np.linalg.lstsq(basis, np.asarray(rows, dtype=np.float64), rcond=None)
        if degree < 2:
            coef = np.vstack([coef, np.zeros((2 - degree, coef.shape[1]))])
        return coef

    def _eval(self, rows: Sequence[Sequence[float]], n: int) -> list[float]:
        coef = self._coef(rows)
        return list(coef[0] + coef[1] * n + coef[2] * n * n)

    def at(self, n: int) -> Chain:
        """The chain at size `n`: each size the fit's value rounded up (exact at a profiled
        size), times clipped at 0, the chain rules' bounds kept (a tape holds its output)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidProblemError(f"the input size must be an integer >= 1, got {n!r}")
        if n in self.sizes:
            return self.chains[self.sizes.index(n)]
        base = self.chains[0]
        fields: dict[str, Any] = {}
        for name in _TIMES:
            fields[name] = tuple(
                max(0.0, v) for v in self._eval([getattr(c, name) for c in self.chains], n)
            )
        for name in _SIZES:
            fields[name] = tuple(
                _up(v) for v in self._eval([getattr(c, name) for c in self.chains], n)
            )
        x = [max(0, v) for v in fields["x"]]
        xbar = [max(v, x[i + 1]) for i, v in enumerate(fields["xbar"])]
        delta = [max(0, v) for v in fields["delta"]]
        of = [max(v, -xbar[i]) for i, v in enumerate(fields["of"])]
        ofn = [max(v, -x[i + 1]) for i, v in enumerate(fields["ofn"])]
        ob = [max(v, -delta[i]) for i, v in enumerate(fields["ob"])]
        values: tuple[BoundaryValue, ...] = ()
        if base.values:
            nbytes = self._eval([[v.nbytes for v in c.values] for c in self.chains], n)
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
            got = [max(0, _up(v)) for v in self._eval(rows, n)]
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
            name=f"{base.name} at size {n}",
        )
