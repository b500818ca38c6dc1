"""The op vocabulary every solver emits, the simulator judges and the runtime replays.

Ops are tiny frozen records with no behaviour: cost lives in the simulator, execution in the runtime.
Stages are 1-based (stage ``i`` maps ``a[i-1]`` to ``a[i]``); graph nodes are 0-based indices in the
graph's topological numbering.

Read as (chain):

- ``F_n(3)``: run stage 3 forward without a tape, then drop its input ``a[2]``.
- ``F_ck(3)``: run stage 3 forward without a tape, keeping ``a[2]`` as a checkpoint.
- ``F_all(3)``: run stage 3 forward recording its tape ``abar[3]`` (which holds ``a[3]``).
- ``B(3)``: back-propagate stage 3: consume ``delta[3]`` and ``abar[3]``, produce ``delta[2]``.
- ``free(a[3])``: drop the kept activation ``a[3]``.
- ``offload(a[3])``: copy the kept ``a[3]`` to host memory beside the next op, then drop it on the
  device.
- ``prefetch(a[3])``: copy ``a[3]`` back from host memory beside the next op; it is kept again
  from the op after that one.

Read as (graph):

- ``compute(7)``: compute node 7 (its inputs must be live); its output becomes live.
- ``free(7)``: release the output of node 7.

Examples
--------
>>> str(FwdCheckpoint(3)), str(Bwd(1)), str(Compute(7))
('F_ck(3)', 'B(1)', 'compute(7)')
>>> parse_op("F_all(2)")
FwdTape(stage=2)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from checkpoint_solver.errors import FileFormatError

__all__ = [
    "Bwd",
    "ChainOp",
    "Compute",
    "Free",
    "FreeActivation",
    "FwdCheckpoint",
    "FwdNoTape",
    "FwdTape",
    "GraphOp",
    "Offload",
    "OffloadValue",
    "Op",
    "Prefetch",
    "PrefetchValue",
    "parse_op",
]


@dataclass(frozen=True, slots=True)
class FwdNoTape:
    """``F_n(i)``: forward stage `stage` without tape, dropping its input."""

    stage: int

    def __str__(self) -> str:
        return f"F_n({self.stage})"


@dataclass(frozen=True, slots=True)
class FwdCheckpoint:
    """``F_ck(i)``: forward stage `stage` without tape, keeping its input as a checkpoint."""

    stage: int

    def __str__(self) -> str:
        return f"F_ck({self.stage})"


@dataclass(frozen=True, slots=True)
class FwdTape:
    """``F_all(i)``: forward stage `stage` recording its tape."""

    stage: int

    def __str__(self) -> str:
        return f"F_all({self.stage})"


@dataclass(frozen=True, slots=True)
class Bwd:
    """``B(i)``: backward of stage `stage`."""

    stage: int

    def __str__(self) -> str:
        return f"B({self.stage})"


@dataclass(frozen=True, slots=True)
class FreeActivation:
    """``free(a[i])``: drop the kept boundary activation ``a[index]``."""

    index: int

    def __str__(self) -> str:
        return f"free(a[{self.index}])"


@dataclass(frozen=True, slots=True)
class Offload:
    """``offload(a[i])``: copy the kept boundary ``a[index]`` to host memory.

    The copy runs on its own stream beside the next compute op, which may still read
    ``a[index]``; when that op ends the device copy is dropped (the step waits for the copy if it
    is not done). The host copy stays until a `Prefetch` brings it back."""

    index: int

    def __str__(self) -> str:
        return f"offload(a[{self.index}])"


@dataclass(frozen=True, slots=True)
class Prefetch:
    """``prefetch(a[i])``: copy the offloaded ``a[index]`` back to the device.

    Its device memory is taken at once; the copy runs beside the next compute op (which must not
    read ``a[index]``), and from the op after that ``a[index]`` is kept on the device again (the
    step waits for the copy if it is not done) and its host copy is released."""

    index: int

    def __str__(self) -> str:
        return f"prefetch(a[{self.index}])"


@dataclass(frozen=True, slots=True)
class Compute:
    """``compute(v)``: compute graph node `node`."""

    node: int

    def __str__(self) -> str:
        return f"compute({self.node})"


@dataclass(frozen=True, slots=True)
class Free:
    """``free(v)``: release the output of graph node `node`."""

    node: int

    def __str__(self) -> str:
        return f"free({self.node})"


@dataclass(frozen=True, slots=True)
class OffloadValue:
    """``offload(v)``: start copying node `node`'s output to host memory; its device copy stays
    live until ``free(v)``, which waits for the copy to end."""

    node: int

    def __str__(self) -> str:
        return f"offload({self.node})"


@dataclass(frozen=True, slots=True)
class PrefetchValue:
    """``prefetch(v)``: start copying node `node`'s offloaded output back; it is live on the
    device from here (its memory taken at once), and the first op that reads it (or frees it)
    waits for the copy to end, which releases the host copy."""

    node: int

    def __str__(self) -> str:
        return f"prefetch({self.node})"


ChainOp: TypeAlias = FwdNoTape | FwdCheckpoint | FwdTape | Bwd | FreeActivation | Offload | Prefetch
GraphOp: TypeAlias = Compute | Free | OffloadValue | PrefetchValue
Op: TypeAlias = ChainOp | GraphOp

CHAIN_OP_TYPES: tuple[type, ...] = (
    FwdNoTape,
    FwdCheckpoint,
    FwdTape,
    Bwd,
    FreeActivation,
    Offload,
    Prefetch,
)
COPY_OP_TYPES: tuple[type, ...] = (Offload, Prefetch, OffloadValue, PrefetchValue)
GRAPH_OP_TYPES: tuple[type, ...] = (Compute, Free, OffloadValue, PrefetchValue)

_PARSERS: tuple[tuple[re.Pattern[str], type], ...] = (
    (re.compile(r"^F_n\((\d+)\)$"), FwdNoTape),
    (re.compile(r"^F_ck\((\d+)\)$"), FwdCheckpoint),
    (re.compile(r"^F_all\((\d+)\)$"), FwdTape),
    (re.compile(r"^B\((\d+)\)$"), Bwd),
    (re.compile(r"^free\(a\[(\d+)\]\)$"), FreeActivation),
    (re.compile(r"^offload\(a\[(\d+)\]\)$"), Offload),
    (re.compile(r"^prefetch\(a\[(\d+)\]\)$"), Prefetch),
    (re.compile(r"^compute\((\d+)\)$"), Compute),
    (re.compile(r"^free\((\d+)\)$"), Free),
    (re.compile(r"^offload\((\d+)\)$"), OffloadValue),
    (re.compile(r"^prefetch\((\d+)\)$"), PrefetchValue),
)


def parse_op(text: str) -> Op:
    """Parse the text form of an op (the inverse of ``str(op)``).

    Raises
    ------
    FileFormatError
        When `text` is not one of the forms listed in this module's docstring.
    """
    for pattern, cls in _PARSERS:
        match = pattern.match(text)
        if match:
            op: Op = cls(int(match.group(1)))
            return op
    raise FileFormatError(
        f"unknown op {text!r}; chain ops are F_n(i), F_ck(i), F_all(i), B(i), free(a[i]), "
        f"offload(a[i]), prefetch(a[i]); "
        f"graph ops are compute(v), free(v), offload(v), prefetch(v)"
    )
