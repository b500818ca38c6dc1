"""`Profile`: what profiling a model measured, as data. Torch-free: a saved profile is solved,
inspected and loaded anywhere, including on a machine without torch or on another device.

Examples
--------
>>> from checkpoint_solver import Chain
>>> from checkpoint_solver.problem.profile import Profile, StageInfo
>>> chain = Chain(uf=(1e-3,), ub=(2e-3,), x=(8, 4), xbar=(4,), of=(0,), ob=(0,))
>>> p = Profile(chain=chain, stages=(StageInfo("loss", ()),), source={"torch": "2.13.0"})
>>> Profile.from_dict(p.to_dict()).chain == chain
True
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checkpoint_solver._io import canonical_json, check_header, load_json, write_atomic
from checkpoint_solver.errors import FileFormatError
from checkpoint_solver.problem import (
    Chain,
    Graph,
    RngPolicy,
    Role,
    problem_from_dict,
    problem_to_dict,
)

__all__ = ["PROFILE_FORMAT", "Profile", "StageInfo", "StageKind", "load_profile"]

PROFILE_FORMAT = "checkpoint_solver.profile"


class StageKind(str, enum.Enum):
    """What a chain stage of a profile is: the code before the first block, a block, or the
    code after the last block with the loss. The values are the stage names the profiler gives
    the first and the last (a block's stage is named after its module)."""

    PROLOGUE = "prologue"
    BLOCK = "block"
    EPILOGUE = "epilogue+loss"

    @classmethod
    def of(cls, name: str) -> StageKind:
        """The kind of the stage named `name`."""
        if name == cls.PROLOGUE.value:
            return cls.PROLOGUE
        if name == cls.EPILOGUE.value:
            return cls.EPILOGUE
        return cls.BLOCK


@dataclass(frozen=True)
class StageInfo:
    """One chain stage: its name, the modules (dotted names) it runs, and its FLOPs.

    `call` says which top-level call of the module the stage is (0-based, not counting calls inside
    other stages): an RNN cell called T times is T stages ``cell``, ``cell#1``, ... with calls
    0..T-1.

    FLOPs come from `torch.utils.flop_counter` and count matmuls, convolutions and attention only
    (pointwise ops and norms count 0; attention counts 0 on CPU's fused kernels): information beside
    the measured times, not a cost model.
    """

    name: str
    modules: tuple[str, ...]
    flops_forward: int = 0
    flops_backward: int = 0
    call: int = 0

    @property
    def kind(self) -> StageKind:
        return StageKind.of(self.name)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "modules": list(self.modules),
            "flops_forward": self.flops_forward,
            "flops_backward": self.flops_backward,
        }
        if self.call:
            d["call"] = self.call
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageInfo:
        return cls(
            name=str(d["name"]),
            modules=tuple(str(m) for m in d.get("modules", ())),
            flops_forward=int(d.get("flops_forward", 0)),
            flops_backward=int(d.get("flops_backward", 0)),
            call=int(d.get("call", 0)),
        )


@dataclass(frozen=True)
class Profile:
    """A profiled model: the `chain` (and the op-level `graph` when captured) with where and how it
    was measured.

    Attributes
    ----------
    chain : Chain
        One stage per entry of `stages`; times in seconds on `source["device"]`, sizes in bytes.
    stages : tuple[StageInfo, ...]
        Names, modules and FLOPs of the chain's stages, in order.
    graph : Graph | None
        The joint forward+backward op graph, when captured.
    graph_stages : tuple[int, ...]
        The chain stage (0-based) each graph node ran in; -1 for parameters and inputs. See
        `stage_graph`.
    source : dict
        Where it was measured: torch version, device and its name, dtype, Python, platform, time.
    measurement : dict
        How: warm-up and repeat counts, the median plain training step (seconds), and the peak of
        activation bytes the live-storage tracker saw during a plain step, with what it counts.
    """

    chain: Chain
    stages: tuple[StageInfo, ...]
    graph: Graph | None = None
    source: dict[str, Any] = field(default_factory=dict)
    measurement: dict[str, Any] = field(default_factory=dict)
    graph_stages: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.stages) != self.chain.length:
            raise FileFormatError(
                f"a profile needs one stage record per chain stage: {len(self.stages)} records "
                f"for a chain of {self.chain.length} stages"
            )
        object.__setattr__(self, "graph_stages", tuple(int(k) for k in self.graph_stages))
        if self.graph is not None and len(self.graph_stages) != self.graph.size:
            raise FileFormatError(
                f"graph_stages has {len(self.graph_stages)} entries for a graph of "
                f"{self.graph.size} nodes"
            )

    def stage_graph(self, stage: int) -> Graph:
        """The op graph of one chain stage (0-based): its forward and backward ops, with the values
        it reads from outside (other stages, parameters, inputs) as input nodes.

        Raises
        ------
        ValueError
            When the profile has no graph or `stage` is out of range.
        """
        if self.graph is None:
            raise ValueError("this profile has no op graph (profiled with graph=False)")
        if not 0 <= stage < self.chain.length:
            raise ValueError(f"stage must be in 0..{self.chain.length - 1}, got {stage}")
        g = self.graph
        inside = [v for v in range(g.size) if self.graph_stages[v] == stage]
        inside_set = set(inside)
        outside = sorted({u for v in inside for u in g.preds[v] if u not in inside_set})
        keep = sorted(outside + inside)  # the original numbering is topological
        new = {v: i for i, v in enumerate(keep)}
        return Graph(
            names=tuple(g.names[v] for v in keep),
            cost=tuple(0.0 if v in outside else g.cost[v] for v in keep),
            out_bytes=tuple(g.out_bytes[v] for v in keep),
            is_backward=tuple(g.is_backward[v] for v in keep),
            edges=tuple((new[u], new[v]) for (u, v) in g.edges if v in inside_set and u in new),
            rng=tuple(RngPolicy.NONE if v in outside else g.rng[v] for v in keep),
            role=tuple(
                (Role.PARAM if g.role[v] == Role.PARAM else Role.INPUT)
                if v in outside
                else g.role[v]
                for v in keep
            ),
            cost_unit=g.cost_unit,
            sources_in_budget=g.sources_in_budget,
            name=f"{self.stages[stage].name} (stage {stage} of {g.name})",
        )

    @property
    def origin(self) -> str:
        """Where it was measured, in words (e.g. ``"torch 2.13.0 on cpu (x86_64)"``)."""
        s = self.source
        name = f" ({s['device_name']})" if s.get("device_name") else ""
        return f"torch {s.get('torch', '?')} on {s.get('device', '?')}{name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": 1,
            "chain": problem_to_dict(self.chain),
            "graph": None if self.graph is None else problem_to_dict(self.graph),
            "graph_stages": list(self.graph_stages),
            "stages": [s.to_dict() for s in self.stages],
            "source": dict(self.source),
            "measurement": dict(self.measurement),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "profile") -> Profile:
        check_header(
            data,
            PROFILE_FORMAT,
            (1,),
            source,
            other_format_hint="(a file written by Profile.save or `checkpoint-solver profile`)",
            upgrade_hint="; upgrade checkpoint_solver to read it",
        )
        for key, kinds, what in (
            ("chain", (Mapping,), "an object (the chain problem)"),
            ("stages", (list,), "a list of stage records"),
            ("graph", (Mapping, type(None)), "an object (the op graph) or null"),
            ("graph_stages", (list, type(None)), "a list of stage numbers or null"),
            ("source", (Mapping, type(None)), "an object or null"),
            ("measurement", (Mapping, type(None)), "an object or null"),
        ):
            if key == "chain" and key not in data:
                raise FileFormatError(
                    f"{source} has no 'chain'; a profile file holds the chain it measured: "
                    f"profile the model again"
                )
            if not isinstance(data.get(key), kinds):
                raise FileFormatError(
                    f"{source}: '{key}' must be {what}, got {type(data.get(key)).__name__}"
                )
        chain = problem_from_dict(data["chain"], source=f"{source}: chain")
        if not isinstance(chain, Chain):
            raise FileFormatError(f"{source}: 'chain' holds a {chain.kind}, not a chain")
        graph = None
        if data.get("graph") is not None:
            g = problem_from_dict(data["graph"], source=f"{source}: graph")
            if not isinstance(g, Graph):
                raise FileFormatError(f"{source}: 'graph' holds a {g.kind}, not a graph")
            graph = g
        try:
            stages = tuple(StageInfo.from_dict(s) for s in data["stages"])
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise FileFormatError(f"{source}: bad stage record ({exc!r})") from None
        graph_stages = list(data.get("graph_stages") or ())
        if any(isinstance(k, bool) or not isinstance(k, int) for k in graph_stages):
            raise FileFormatError(f"{source}: 'graph_stages' must hold integers")
        return cls(
            chain=chain,
            stages=stages,
            graph=graph,
            source=dict(data.get("source") or {}),
            measurement=dict(data.get("measurement") or {}),
            graph_stages=tuple(graph_stages),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the profile as JSON, atomically."""
        return write_atomic(path, canonical_json(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        """Read a profile written by `save`, from any torch version or device."""
        from checkpoint_solver._args import expect_path

        expect_path(path, "Profile.load")
        return cls.from_dict(load_json(path, "profile"), source=str(path))


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Read a profile JSON (see `Profile.load`)."""
    return Profile.load(path)
