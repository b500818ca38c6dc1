"""Saved-tensor holders: how a stage run without its tape keeps nothing, and how its rerun with
tape gives autograd back what it saved.

While a stage runs without its tape (``F_n``/``F_ck``), every tensor autograd saves is packed as an
empty `Holder` (`Holders.pack`), so the tape is freed as the forward goes. ``F_all(k)`` reruns the
stage with a `Filler` as its pack hook: the i-th tensor the rerun saves fills stage k's i-th
holder, after checking it is the same shape, dtype and device as the one the forward saved.
Autograd unpacks a filled holder once (`Holder.take`); the executor advances the schedule when it
unpacks an empty one.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from checkpoint_solver.errors import ReplayError

__all__ = ["Filler", "Holder", "Holders", "discard", "no_unpack"]

_Meta = tuple[torch.Size, torch.dtype, torch.device]


class Holder:
    """Stands for one saved tensor of a stage run without its tape until a rerun fills it."""

    __slots__ = ("__weakref__", "stage", "value")

    def __init__(self, stage: int) -> None:
        self.stage = stage
        self.value: torch.Tensor | None = None

    def take(self) -> torch.Tensor:
        """The filled value, once: the holder is empty again after."""
        value, self.value = self.value, None
        if value is None:
            raise ReplayError(
                f"stage {self.stage}'s saved tensor was used twice or before its rerun; a second "
                f"backward through a scheduled step (retain_graph=True) is not supported"
            )
        return value


class Holders:
    """The holders of one step, per stage, with what each stands for (shape, dtype, device).
    Held weakly: a holder autograd has dropped (its node freed) is not filled."""

    def __init__(self) -> None:
        self.packing: int | None = None  # the stage whose saved tensors become holders
        self._refs: dict[int, list[weakref.ref[Holder]]] = {}
        self._meta: dict[int, list[_Meta]] = {}

    def open(self, stage: int | None) -> None:
        """From now on, saved tensors are packed as holders of `stage` (None: kept as they are)."""
        self.packing = stage
        if stage is not None:
            self._refs[stage] = []
            self._meta[stage] = []

    def pack(self, t: torch.Tensor) -> Any:
        """The pack hook of a step's forward."""
        s = self.packing
        if s is None:
            return t
        h = Holder(s)
        self._refs[s].append(weakref.ref(h))
        self._meta[s].append((t.shape, t.dtype, t.device))
        return h

    def filler(self, stage: int) -> Filler:
        """The pack hook that fills `stage`'s holders when it is rerun with its tape."""
        return Filler(stage, self._refs.get(stage, []), self._meta.get(stage, []))


class Filler:
    """Pack hook of an ``F_all`` rerun: the i-th saved tensor fills the stage's i-th holder."""

    def __init__(self, stage: int, refs: list[weakref.ref[Holder]], meta: list[_Meta]) -> None:
        self.s = stage
        self.refs = refs
        self.meta = meta
        self.count = 0

    def pack(self, t: torch.Tensor) -> None:
        i = self.count
        if i >= len(self.refs):
            raise ReplayError(
                f"stage {self.s} saved more tensors when rerun than in the forward "
                f"({len(self.refs)}): its forward must save the same tensors every time it runs"
            )
        shape, dtype, device = self.meta[i]
        if (t.shape, t.dtype, t.device) != (shape, dtype, device):
            raise ReplayError(
                f"stage {self.s}'s saved tensor {i} is {tuple(t.shape)} {t.dtype} on {t.device} "
                f"when rerun but was {tuple(shape)} {dtype} on {device} in the forward: the stage "
                f"computed something else the second time (state its forward updates, such as a "
                f"KV cache: train with use_cache=False)"
            )
        self.count += 1
        h = self.refs[i]()
        if h is not None:
            h.value = t.detach() if t.requires_grad else t

    def done(self) -> None:
        """The rerun ended: it must have saved as many tensors as the forward did."""
        if self.count != len(self.refs):
            raise ReplayError(
                f"stage {self.s} saved {self.count} tensors when rerun but {len(self.refs)} in "
                f"the forward: its forward must save the same tensors every time it runs"
            )


def discard(t: torch.Tensor) -> None:
    """Pack hook of a rerun without tape: its graph is thrown away, so nothing is saved."""
    return None


def no_unpack(x: Any) -> torch.Tensor:
    """Unpack hook of a rerun: its own graph is never back-propagated."""
    raise ReplayError("a rerun's own graph was back-propagated (internal error)")
