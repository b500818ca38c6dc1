"""Schedules per input-size bucket: profile at a few shapes, solve per bucket, apply them all.

    shapes = cs.buckets.profile_shapes(model, [batch_128, batch_256, batch_512])
    buckets = cs.buckets.solve_buckets(shapes, "2GiB", "dp", edges=[128, 256, 384, 512])
    cs.buckets.apply_buckets(model, buckets)   # each call replays its bucket's schedule

The examples differ in one dimension (the sequence length, or the batch) or in two (the batch and
the length: profile every combination of two or three sizes of each, e.g. 2 x 3 shapes), each
the same in every input tensor that has it (``input_ids`` and ``labels`` both ``(B, S)``). The
chains profiled at those sizes are fitted (`checkpoint_solver.problem.buckets.ChainFit`: every
size and time as a polynomial, ``a + b n + c n^2`` in one dimension, with the products of the
dimensions' terms in several), each bucket gets the chain at its upper edge in every dimension
and a schedule solved for the budget on it, and the applied model picks, per call, the bucket of
the sizes it is called with: in one dimension ``(previous edge, edge]``; in several, the smallest
edge at or above the call's size in each (``edges=[[2, 4, 8], [128, 256, 512]]``: 9 buckets).
Sizes grow with each dimension, so the promise made at the edges holds for every call in the
bucket; a call above the last edge of a dimension is refused (`ApplyError`) rather than run
without a promise.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checkpoint_solver.errors import ApplyError, InvalidProblemError
from checkpoint_solver.problem import Chain
from checkpoint_solver.problem.buckets import ChainFit, Size
from checkpoint_solver.problem.profile import Profile
from checkpoint_solver.schedule import Schedule

__all__ = ["Buckets", "ShapeProfiles", "apply_buckets", "profile_shapes", "solve_buckets"]


@dataclass(frozen=True)
class ShapeProfiles:
    """Profiles of one model at several sizes of its varying input dimensions.

    Attributes
    ----------
    profiles : tuple[Profile, ...]
        Ascending by size.
    sizes : tuple[int | tuple[int, ...], ...]
        Each profile's size: an int for one varying dimension, one int per dimension (in the
        order of `dims`) for several.
    dims : tuple[tuple[int, int], ...] | tuple[tuple[tuple[int, int], ...], ...]
        Where each dimension is read from a call's inputs: (position among the flattened input
        tensors, axis) of each tensor axis that varies with it; for several dimensions, one
        such tuple per dimension.
    """

    profiles: tuple[Profile, ...]
    sizes: tuple[Size, ...]
    dims: tuple[Any, ...]

    @functools.cached_property
    def fit(self) -> ChainFit:
        return ChainFit.of([p.chain for p in self.profiles], self.sizes)

    @property
    def groups(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """`dims` as one tuple of axes per dimension, whatever their number."""
        return _groups(self.dims)


@dataclass(frozen=True)
class Buckets:
    """One schedule per bucket of sizes.

    Attributes
    ----------
    edges : tuple[int, ...] | tuple[tuple[int, ...], ...]
        One varying dimension: the ascending upper bounds of the buckets (the first starts at
        1). Several: the ascending edges of each dimension; the buckets are every combination
        (`cells`).
    chains : tuple[Chain, ...]
        The chain at each bucket's edges (from the fit), in the order of `cells`.
    schedules : tuple[Schedule, ...]
        Each solved on its chain.
    dims : tuple[Any, ...]
        Where the sizes are read from a call's inputs (see `ShapeProfiles.dims`).
    profile : Profile
        The smallest profile: the stages the schedules name.
    """

    edges: tuple[Any, ...]
    chains: tuple[Chain, ...]
    schedules: tuple[Schedule, ...]
    dims: tuple[Any, ...]
    profile: Profile

    @property
    def grid(self) -> tuple[tuple[int, ...], ...]:
        """The edges of each dimension (one tuple for one dimension)."""
        if self.edges and isinstance(self.edges[0], int):
            return (tuple(self.edges),)
        return tuple(tuple(e) for e in self.edges)

    @property
    def groups(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        """`dims` as one tuple of axes per dimension, whatever their number."""
        return _groups(self.dims)

    @property
    def cells(self) -> tuple[Size, ...]:
        """Each bucket's upper edges (an int for one dimension), in the order of `schedules`."""
        cells = list(itertools.product(*self.grid))
        return tuple(c[0] if len(c) == 1 else c for c in cells)

    def bucket_of(self, n: Size) -> int:
        """Index of the bucket holding size `n` (an int for one varying dimension, one size per
        dimension for several)."""
        grid = self.grid
        point = (n,) if isinstance(n, int) else tuple(n)
        if len(point) != len(grid):
            raise ApplyError(
                f"input size {n!r} has {len(point)} dimensions; the buckets have {len(grid)}"
            )
        index = 0
        for d, (v, edges) in enumerate(zip(point, grid, strict=True)):
            k = next((k for k, e in enumerate(edges) if v <= e), None)
            if k is None:
                where = "" if len(grid) == 1 else f" in dimension {d}"
                raise ApplyError(
                    f"input size {v}{where} is above the largest bucket edge ({edges[-1]}): no "
                    f"schedule promises its memory; add an edge of at least {v}{where} "
                    f"(solve_buckets(..., edges=...))"
                )
            index = index * len(edges) + k
        return index

    def table(self) -> str:
        from checkpoint_solver.units import format_bytes

        rows = [
            f"  <= {_cell(e):>6}: {s.solver}, predicted peak "
            f"{format_bytes(s.predicted.peak_bytes)}, overhead {s.predicted.overhead:+.1%}"
            for e, s in zip(self.cells, self.schedules, strict=True)
        ]
        return "\n".join(["buckets:", *rows])


def _cell(e: Size) -> str:
    return str(e) if isinstance(e, int) else " x ".join(str(v) for v in e)


def _groups(dims: tuple[Any, ...]) -> tuple[tuple[tuple[int, int], ...], ...]:
    if dims and isinstance(dims[0][0], int):
        return (tuple(dims),)
    return tuple(tuple(g) for g in dims)


def _leaves(example: Any) -> list[Any]:
    from checkpoint_solver.profiling.inputs import Inputs

    return Inputs.of(example).tensors()


def _varying(examples: Sequence[Any]) -> tuple[tuple[Any, ...], list[Size]]:
    """Which tensor axes vary between the examples, grouped into dimensions (axes whose sizes
    agree in every example are one dimension: ``input_ids``' and ``labels``' lengths), and each
    example's size."""
    shapes = [[tuple(t.shape) for t in _leaves(e)] for e in examples]
    if len({len(s) for s in shapes}) != 1 or any(
        [len(a) for a in s] != [len(a) for a in shapes[0]] for s in shapes
    ):
        raise InvalidProblemError(
            "the examples must have the same tensors with the same number of dimensions; only "
            "the sizes of one or two dimensions (the length, the batch) may differ"
        )
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for pos, first in enumerate(shapes[0]):
        for axis in range(len(first)):
            across = tuple(s[pos][axis] for s in shapes)
            if len(set(across)) > 1:
                groups.setdefault(across, []).append((pos, axis))
    if not groups:
        raise InvalidProblemError("the examples all have the same shape: give two or three sizes")
    if len(groups) > MAX_DIMS:
        raise InvalidProblemError(
            f"the examples differ in more than {MAX_DIMS} dimensions ("
            + "; ".join(f"{axes} take {list(sizes)}" for sizes, axes in groups.items())
            + "): vary the length, the batch or both, each the same in every tensor that has "
            "it, and profile the others at their training value"
        )
    dims = list(groups.values())
    per_example = [tuple(int(sizes[k]) for sizes in groups) for k in range(len(examples))]
    if len(dims) == 1:
        return tuple(dims[0]), [p[0] for p in per_example]
    return tuple(tuple(g) for g in dims), list(per_example)


# The most dimensions the examples may vary in (the batch and the length).
MAX_DIMS = 2


def profile_shapes(model: Any, examples: Sequence[Any], **kwargs: Any) -> ShapeProfiles:
    """Profile `model` on each example (`checkpoint_solver.profiling.profile` with `kwargs`;
    the op graph is not captured unless ``graph=True``)."""
    from checkpoint_solver.profiling import profile

    if len(examples) < 2:
        raise InvalidProblemError(
            "profile_shapes needs two or three examples of different sizes (for two varying "
            "dimensions, every combination of two or three sizes of each)"
        )
    dims, sizes = _varying(examples)
    points = {_as_point(n) for n in sizes}
    per_dim = [sorted({p[d] for p in points}) for d in range(len(next(iter(points))))]
    if len(per_dim) > 1 and any(p not in points for p in itertools.product(*per_dim)):
        missing = [p for p in itertools.product(*per_dim) if p not in points]
        raise InvalidProblemError(
            f"the examples vary in {len(per_dim)} dimensions (sizes {per_dim}) but do not cover "
            f"every combination of them (missing {missing}): profile each combination, e.g. "
            f"two batch sizes x three lengths"
        )
    kwargs.setdefault("graph", False)
    profiles = [profile(model, e, **kwargs) for e in examples]
    order = sorted(range(len(sizes)), key=lambda k: _as_point(sizes[k]))
    out = ShapeProfiles(tuple(profiles[k] for k in order), tuple(sizes[k] for k in order), dims)
    names = [[s.name for s in p.stages] for p in out.profiles]
    if any(n != names[0] for n in names):
        raise InvalidProblemError(
            "the model's stages differ between the examples' sizes; profile each size alone"
        )
    out.fit  # noqa: B018  (checks that the chains fit together)
    return out


def _as_point(n: Size) -> tuple[int, ...]:
    return (n,) if isinstance(n, int) else tuple(n)


def solve_buckets(
    shapes: ShapeProfiles,
    budget: int | float | str,
    solver: str = "auto",
    *,
    edges: Sequence[int] | Sequence[Sequence[int]] | None = None,
    scope: str | None = None,
    **options: Any,
) -> Buckets:
    """A schedule per bucket for `budget`, solved on the chain at the bucket's upper edges.
    `edges`: for one varying dimension the buckets' upper bounds (bucket ``(edges[k-1],
    edges[k]]``); for several, one list of edges per dimension, every combination a bucket.
    They default to the profiled sizes."""
    from checkpoint_solver.solvers import solve

    fit = shapes.fit
    points = [_as_point(n) for n in shapes.sizes]
    ndims = len(points[0])
    if edges is None:
        grid = [sorted({p[d] for p in points}) for d in range(ndims)]
    elif ndims == 1:
        if any(not isinstance(e, int) for e in edges):
            raise InvalidProblemError(
                f"the examples vary in one dimension: edges is a list of sizes, got {edges!r}"
            )
        grid = [sorted({int(e) for e in edges})]  # type: ignore[arg-type]
    else:
        if len(edges) != ndims or any(isinstance(e, int) for e in edges):
            raise InvalidProblemError(
                f"the examples vary in {ndims} dimensions: edges is one list of sizes per "
                f"dimension ([[...], [...]]), got {edges!r}"
            )
        grid = [sorted({int(v) for v in e}) for e in edges]  # type: ignore[union-attr]
    for d, dim_edges in enumerate(grid):
        largest = max(p[d] for p in points)
        where = "" if ndims == 1 else f" of dimension {d}"
        if not dim_edges or dim_edges[0] < 1:
            raise InvalidProblemError(f"bucket edges must be integers >= 1, got {dim_edges}")
        if dim_edges[-1] > 2 * largest:
            raise InvalidProblemError(
                f"bucket edge {dim_edges[-1]}{where} is more than twice the largest profiled "
                f"size ({largest}): the fit would extrapolate too far; profile a larger example"
            )
    cells = list(itertools.product(*grid))
    chains = tuple(fit.at(c[0] if ndims == 1 else c) for c in cells)
    schedules = tuple(solve(c, budget, solver, scope=scope, **options) for c in chains)
    out_edges: tuple[Any, ...] = tuple(grid[0]) if ndims == 1 else tuple(tuple(g) for g in grid)
    return Buckets(out_edges, chains, schedules, shapes.dims, shapes.profiles[0])


def apply_buckets(model: Any, buckets: Buckets) -> Any:
    """Hook `model` so that each call replays the schedule of its input size's bucket (see
    `checkpoint_solver.runtime.buckets`)."""
    from checkpoint_solver.runtime.buckets import apply_buckets as _apply

    return _apply(model, buckets)
