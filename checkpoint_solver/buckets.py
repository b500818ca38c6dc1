"""Schedules per input-size bucket: profile at a few shapes, solve per bucket, apply them all.

    shapes = cs.buckets.profile_shapes(model, [batch_128, batch_256, batch_512])
    buckets = cs.buckets.solve_buckets(shapes, "2GiB", "dp", edges=[128, 256, 384, 512])
    cs.buckets.apply_buckets(model, buckets)   # each call replays its bucket's schedule

The examples must differ in one dimension only (the sequence length, or the batch), the same in
every input tensor that has it (``input_ids`` and ``labels`` both ``(B, S)``). The chains
profiled at those sizes are fitted (`checkpoint_solver.problem.buckets.ChainFit`: every size and
time as ``a + b n + c n^2``), each bucket ``(previous edge, edge]`` gets the chain at its edge and
a schedule solved for the budget on it, and the applied model picks, per call, the bucket of the
size it is called with. Sizes grow with ``n``, so the promise made at the edge holds for every
call in the bucket; a call above the last edge is refused (`ApplyError`) rather than run without
a promise.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checkpoint_solver.errors import ApplyError, InvalidProblemError
from checkpoint_solver.problem import Chain
from checkpoint_solver.problem.buckets import ChainFit
from checkpoint_solver.problem.profile import Profile
from checkpoint_solver.schedule import Schedule

__all__ = ["Buckets", "ShapeProfiles", "apply_buckets", "profile_shapes", "solve_buckets"]


@dataclass(frozen=True)
class ShapeProfiles:
    """Profiles of one model at several sizes of its one varying input dimension.

    Attributes
    ----------
    profiles : tuple[Profile, ...]
        Ascending by size.
    sizes : tuple[int, ...]
    dims : tuple[tuple[int, int], ...]
        The varying dimension: (position among the flattened input tensors, axis) of each
        tensor axis that varies with it.
    """

    profiles: tuple[Profile, ...]
    sizes: tuple[int, ...]
    dims: tuple[tuple[int, int], ...]

    @functools.cached_property
    def fit(self) -> ChainFit:
        return ChainFit.of([p.chain for p in self.profiles], self.sizes)


@dataclass(frozen=True)
class Buckets:
    """One schedule per bucket of sizes ``(edges[k-1], edges[k]]``.

    Attributes
    ----------
    edges : tuple[int, ...]
        Ascending upper bounds of the buckets (the first bucket starts at 1).
    chains : tuple[Chain, ...]
        The chain at each edge (from the fit).
    schedules : tuple[Schedule, ...]
        Each solved on its chain.
    dims : tuple[tuple[int, int], ...]
        Where the size is read from a call's inputs (see `ShapeProfiles.dims`).
    profile : Profile
        The smallest profile: the stages the schedules name.
    """

    edges: tuple[int, ...]
    chains: tuple[Chain, ...]
    schedules: tuple[Schedule, ...]
    dims: tuple[tuple[int, int], ...]
    profile: Profile

    def bucket_of(self, n: int) -> int:
        """Index of the bucket holding size `n`."""
        for k, edge in enumerate(self.edges):
            if n <= edge:
                return k
        raise ApplyError(
            f"input size {n} is above the largest bucket ({self.edges[-1]}): no schedule "
            f"promises its memory; add a bucket edge of at least {n} (solve_buckets(..., "
            f"edges=[..., {n}]))"
        )

    def table(self) -> str:
        from checkpoint_solver.units import format_bytes

        rows = [
            f"  <= {e:>6}: {s.solver}, predicted peak {format_bytes(s.predicted.peak_bytes)}, "
            f"overhead {s.predicted.overhead:+.1%}"
            for e, s in zip(self.edges, self.schedules, strict=True)
        ]
        return "\n".join(["buckets:", *rows])


def _leaves(example: Any) -> list[Any]:
    from checkpoint_solver.profiling.inputs import Inputs

    return Inputs.of(example).tensors()


def _varying(examples: Sequence[Any]) -> tuple[tuple[tuple[int, int], ...], list[int]]:
    shapes = [[tuple(t.shape) for t in _leaves(e)] for e in examples]
    if len({len(s) for s in shapes}) != 1 or any(
        [len(a) for a in s] != [len(a) for a in shapes[0]] for s in shapes
    ):
        raise InvalidProblemError(
            "the examples must have the same tensors with the same number of dimensions; only "
            "the size of one dimension may differ"
        )
    dims = []
    for pos, first in enumerate(shapes[0]):
        for axis in range(len(first)):
            if len({s[pos][axis] for s in shapes}) > 1:
                dims.append((pos, axis))
    if not dims:
        raise InvalidProblemError("the examples all have the same shape: give two or three sizes")
    sizes = []
    for s in shapes:
        got = {s[pos][axis] for pos, axis in dims}
        if len(got) != 1:
            raise InvalidProblemError(
                f"the examples differ in more than one dimension ({sorted(dims)} take the sizes "
                f"{sorted(got)} in one example): vary one dimension (the sequence length, or the "
                f"batch) and profile the others at their training value"
            )
        sizes.append(int(got.pop()))
    return tuple(dims), sizes


def profile_shapes(model: Any, examples: Sequence[Any], **kwargs: Any) -> ShapeProfiles:
    """Profile `model` on each example (`checkpoint_solver.profiling.profile` with `kwargs`;
    the op graph is not captured unless ``graph=True``)."""
    from checkpoint_solver.profiling import profile

    if len(examples) < 2:
        raise InvalidProblemError("profile_shapes needs two or three examples of different sizes")
    dims, sizes = _varying(examples)
    kwargs.setdefault("graph", False)
    profiles = [profile(model, e, **kwargs) for e in examples]
    order = sorted(range(len(sizes)), key=lambda k: sizes[k])
    out = ShapeProfiles(tuple(profiles[k] for k in order), tuple(sizes[k] for k in order), dims)
    names = [[s.name for s in p.stages] for p in out.profiles]
    if any(n != names[0] for n in names):
        raise InvalidProblemError(
            "the model's stages differ between the examples' sizes; profile each size alone"
        )
    out.fit  # noqa: B018  (checks that the chains fit together)
    return out


def solve_buckets(
    shapes: ShapeProfiles,
    budget: int | float | str,
    solver: str = "auto",
    *,
    edges: Sequence[int] | None = None,
    scope: str | None = None,
    **options: Any,
) -> Buckets:
    """A schedule per bucket for `budget`: bucket ``(edges[k-1], edges[k]]`` solved on the chain
    at ``edges[k]``. `edges` default to the profiled sizes."""
    from checkpoint_solver.solvers import solve

    fit = shapes.fit
    edges = sorted({int(e) for e in (edges or shapes.sizes)})
    if not edges or edges[0] < 1:
        raise InvalidProblemError(f"bucket edges must be integers >= 1, got {edges}")
    if edges[-1] > 2 * shapes.sizes[-1]:
        raise InvalidProblemError(
            f"bucket edge {edges[-1]} is more than twice the largest profiled size "
            f"({shapes.sizes[-1]}): the fit would extrapolate too far; profile a larger example"
        )
    chains = tuple(fit.at(e) for e in edges)
    schedules = tuple(solve(c, budget, solver, scope=scope, **options) for c in chains)
    return Buckets(tuple(edges), chains, schedules, shapes.dims, shapes.profiles[0])


def apply_buckets(model: Any, buckets: Buckets) -> Any:
    """Hook `model` so that each call replays the schedule of its input size's bucket (see
    `checkpoint_solver.runtime.buckets`)."""
    from checkpoint_solver.runtime.buckets import apply_buckets as _apply

    return _apply(model, buckets)
