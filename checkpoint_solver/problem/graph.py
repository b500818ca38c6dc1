"""The graph problem of Jain et al., "Checkmate" (MLSys 2020): a DAG of forward and backward ops."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx

from checkpoint_solver.errors import InvalidProblemError
from checkpoint_solver.problem.chain import COST_UNITS, CostUnit
from checkpoint_solver.problem.states import ModelStates
from checkpoint_solver.units import MAX_BYTES

__all__ = ["RNG_POLICIES", "ROLES", "Graph", "RngPolicy", "Role"]


class _Value(str, enum.Enum):
    """A str enum that prints as its value (as problem files and messages hold it)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __hash__(self) -> int:  # as its value's, in every Python (3.10's Enum hashes the name)
        return str.__hash__(self)


class RngPolicy(_Value):
    """How a node that draws random numbers may be recomputed (`Graph.rng`). A str: it compares
    and hashes as its value, which is what problem files hold."""

    NONE = "none"  # deterministic
    FORBID_RECOMPUTE = "forbid_recompute"  # never recomputed (dropout without a saved RNG state)
    REPLAY_STATE = "replay_state"  # recomputed with the RNG state its first run saved


class Role(_Value):
    """What a node is (`Graph.role`): an op the step computes, or a value that exists before the
    step starts (an input, a parameter). A str, like `RngPolicy`."""

    OP = "op"
    INPUT = "input"
    PARAM = "param"


RNG_POLICIES: tuple[str, ...] = tuple(p.value for p in RngPolicy)
ROLES: tuple[str, ...] = tuple(r.value for r in Role)


@dataclass(frozen=True, slots=True, kw_only=True)
class Graph:
    """A DAG of the operations of one training step, nodes numbered ``0..n-1`` in topological order.

    Every edge ``(u, v)`` has ``u < v``: the numbering is a topological order, so a graph built here
    cannot have a cycle. Use `Graph.from_networkx` or `Graph.from_node_link` to load graphs whose
    nodes have other names; they are renumbered in a deterministic topological order and keep their
    names in `names`.

    Attributes
    ----------
    names : tuple[str, ...]
        Human names of the nodes.
    cost : tuple[float, ...]
        Compute cost of each node, in `cost_unit`.
    out_bytes : tuple[int, ...]
        Bytes of each node's output.
    is_backward : tuple[bool, ...]
        True for nodes of the backward pass.
    rng : tuple[RngPolicy, ...]
        Random-op policy per node (given as `RngPolicy` members or their values): ``"none"`` (deterministic), ``"forbid_recompute"`` (never
        recomputed, e.g. dropout without a saved RNG state) or ``"replay_state"`` (recomputed with its
        saved RNG state).
    role : tuple[Role, ...]
        (`Role` members or their values) ``"op"`` for computed nodes; ``"input"`` and ``"param"`` for values that exist before the
        step starts. Those are live throughout, never computed or freed, and counted in memory only
        when `sources_in_budget` is true.
    edges : tuple[tuple[int, int], ...]
        Data dependencies ``(producer, consumer)``, sorted.
    cost_unit : {"seconds", "flops", "abstract"}
    sources_in_budget : bool
        Whether input and parameter bytes count against the budget.
    block : tuple[int, ...]
        Optional: the block of a chain of blocks each node belongs to (0 before the first block,
        ``k`` for block ``k``, one more after the last; -1 for inputs and parameters), as captured
        by `checkpoint_solver.profiling.capture_region`. Empty when unknown. The hierarchical
        solver needs it; it is not part of the fingerprint.
    name : str
        Free text, not part of the fingerprint.
    states : ModelStates | None
        The step's model states for whole-step budgets, with one gradient size per node (the
        parameter-gradient bytes that node's op makes; see `checkpoint_solver.problem.states`).
        Not part of the fingerprint. None: activations only.
    """

    names: tuple[str, ...]
    cost: tuple[float, ...]
    out_bytes: tuple[int, ...]
    is_backward: tuple[bool, ...]
    edges: tuple[tuple[int, int], ...]
    rng: tuple[str, ...] = ()
    role: tuple[str, ...] = ()
    cost_unit: CostUnit = "seconds"
    sources_in_budget: bool = False
    block: tuple[int, ...] = ()
    name: str = ""
    states: ModelStates | None = None
    kind: Literal["graph"] = field(default="graph", init=False)
    preds: tuple[tuple[int, ...], ...] = field(default=(), init=False, repr=False, compare=False)
    succs: tuple[tuple[int, ...], ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Long: every field's validation in order, each with an error naming the field; split, the
        # order the checks rely on would be implicit.
        n = len(self.names)
        object.__setattr__(self, "names", tuple(str(s) for s in self.names))
        if not self.rng:
            object.__setattr__(self, "rng", (RngPolicy.NONE,) * n)
        if not self.role:
            object.__setattr__(self, "role", (Role.OP,) * n)
        for blk in self.block:
            if isinstance(blk, bool) or not isinstance(blk, int):
                raise InvalidProblemError(
                    f"Graph.block holds {blk!r}; blocks are integers (-1 for sources)"
                )
        object.__setattr__(self, "block", tuple(self.block))
        if self.block and len(self.block) != n:
            raise InvalidProblemError(
                f"Graph.block has {len(self.block)} entries but the graph has {n} nodes; give one "
                f"per node or none"
            )
        for fname in ("cost", "out_bytes", "is_backward", "rng", "role"):
            value = tuple(getattr(self, fname))
            object.__setattr__(self, fname, value)
            if len(value) != n:
                raise InvalidProblemError(
                    f"Graph.{fname} has {len(value)} entries but the graph has {n} nodes (len(names))"
                )
        costs = []
        for i, c in enumerate(self.cost):
            if (
                isinstance(c, bool)
                or not isinstance(c, (int, float))
                or not math.isfinite(c)
                or c < 0
            ):
                raise InvalidProblemError(
                    f"Graph.cost of node {i} ({self.names[i]}) is {c!r}; costs must be finite numbers >= 0"
                )
            costs.append(float(c))
        object.__setattr__(self, "cost", tuple(costs))
        sizes = []
        for i, raw in enumerate(self.out_bytes):
            b: object = raw
            if isinstance(b, float) and b.is_integer():
                b = int(b)
            if isinstance(b, bool) or not isinstance(b, int) or b < 0:
                raise InvalidProblemError(
                    f"Graph.out_bytes of node {i} ({self.names[i]}) is {b!r}; sizes must be integers >= 0"
                )
            sizes.append(b)
        object.__setattr__(self, "out_bytes", tuple(sizes))
        if sum(sizes) > MAX_BYTES:
            raise InvalidProblemError(
                f"Graph.out_bytes add up to {sum(sizes)} bytes, more than {MAX_BYTES} (2**60, "
                f"1 EiB), the most the solvers represent in machine integers; give sizes in bytes"
            )
        if not math.isfinite(math.fsum(costs)):
            raise InvalidProblemError("Graph.cost adds up to infinity; give costs in smaller units")
        object.__setattr__(self, "is_backward", tuple(bool(b) for b in self.is_backward))
        for i, p in enumerate(self.rng):
            if not isinstance(p, str) or p not in RNG_POLICIES:
                raise InvalidProblemError(
                    f"Graph.rng of node {i} ({self.names[i]}) is {p!r}; use one of {', '.join(RNG_POLICIES)}"
                )
        for i, r in enumerate(self.role):
            if not isinstance(r, str) or r not in ROLES:
                raise InvalidProblemError(
                    f"Graph.role of node {i} ({self.names[i]}) is {r!r}; use one of {', '.join(ROLES)}"
                )
        object.__setattr__(self, "rng", tuple(RngPolicy(p) for p in self.rng))
        object.__setattr__(self, "role", tuple(Role(r) for r in self.role))
        edges = set()
        for e in self.edges:
            if (
                isinstance(e, (str, bytes))
                or not hasattr(e, "__len__")
                or len(e) != 2
                or any(isinstance(w, bool) or not isinstance(w, int) for w in e)
            ):
                raise InvalidProblemError(
                    f"Graph edge {e!r} is not a (producer, consumer) pair of node numbers"
                )
            u, v = int(e[0]), int(e[1])
            if not (0 <= u < n and 0 <= v < n):
                raise InvalidProblemError(
                    f"Graph edge ({u}, {v}) names a node outside 0..{n - 1}: every input of a node "
                    f"must be a node of the graph"
                )
            if u >= v:
                raise InvalidProblemError(
                    f"Graph edge ({u}, {v}) goes backwards in the node numbering; nodes must be "
                    f"numbered in topological order (load with Graph.from_networkx to renumber), "
                    f"and a graph with a cycle cannot be scheduled"
                )
            edges.add((u, v))
        object.__setattr__(self, "edges", tuple(sorted(edges)))
        if self.cost_unit not in COST_UNITS:
            raise InvalidProblemError(
                f"Graph.cost_unit is {self.cost_unit!r}; use one of {', '.join(COST_UNITS)}"
            )
        preds: list[list[int]] = [[] for _ in range(n)]
        succs: list[list[int]] = [[] for _ in range(n)]
        for u, v in self.edges:
            preds[v].append(u)
            succs[u].append(v)
        for v in range(n):
            if self.role[v] != "op" and preds[v]:
                raise InvalidProblemError(
                    f"Graph node {v} ({self.names[v]}) is an {self.role[v]} but has inputs {preds[v]}; "
                    f"inputs and parameters exist before the step and cannot depend on other nodes"
                )
        object.__setattr__(self, "preds", tuple(tuple(p) for p in preds))
        object.__setattr__(self, "succs", tuple(tuple(s) for s in succs))
        if self.states is not None:
            if not isinstance(self.states, ModelStates):
                object.__setattr__(self, "states", ModelStates.from_dict(self.states))
            if len(self.states.grads) != n:
                raise InvalidProblemError(
                    f"Graph.states.grads has {len(self.states.grads)} entries but the graph has "
                    f"{n} nodes: one parameter-gradient size per node"
                )

    @property
    def size(self) -> int:
        """Number of nodes."""
        return len(self.names)

    @property
    def ops(self) -> tuple[int, ...]:
        """Indices of the nodes that are computed (role ``"op"``)."""
        return tuple(i for i, r in enumerate(self.role) if r == "op")

    @property
    def budget_source_bytes(self) -> int:
        """Bytes of the inputs and parameters that count against the budget: all of them when
        `sources_in_budget`, else none."""
        if not self.sources_in_budget:
            return 0
        return sum(b for b, r in zip(self.out_bytes, self.role, strict=True) if r != "op")

    @property
    def store_all_time(self) -> float:
        """Compute time with no recomputation: the sum of the costs of all op nodes."""
        return math.fsum(self.cost[i] for i in self.ops)

    def to_networkx(self) -> nx.DiGraph:
        """Return a networkx DiGraph with the node attributes of this graph."""
        g = nx.DiGraph(name=self.name)
        for i in range(self.size):
            g.add_node(
                i,
                name=self.names[i],
                cost=self.cost[i],
                out_bytes=self.out_bytes[i],
                is_backward=self.is_backward[i],
                rng=self.rng[i],
                role=self.role[i],
            )
        g.add_edges_from(self.edges)
        return g

    @classmethod
    def from_networkx(
        cls,
        g: nx.DiGraph,
        *,
        cost: str = "cost",
        out_bytes: str = "out_bytes",
        is_backward: str = "is_backward",
        cost_unit: CostUnit = "seconds",
        name: str | None = None,
        order: Sequence[Any] | None = None,
    ) -> Graph:
        """Build a graph from a networkx DiGraph, renumbering nodes in topological order.

        The order is `order` when given (every node once, each after its inputs), else
        ``g.graph["order"]`` when the graph carries one (the Moccasin files do: the order their
        store-all peak and budgets refer to), else the lexicographic topological sort keyed by each
        node's position in ``g.nodes``, so the same DiGraph always gives the same numbering. The
        numbering matters: ``ilp`` computes nodes for the first time in this order (Checkmate's
        stages) and ``store_all``'s peak is this order's.

        Raises
        ------
        InvalidProblemError
            If `g` has a cycle (the message shows one), a node lacks a required attribute, or
            `order` is not a topological order of the nodes.
        """
        if not isinstance(g, nx.DiGraph):
            raise InvalidProblemError(
                f"expected a networkx DiGraph, got {type(g).__name__}; build one with nx.DiGraph()"
            )
        position = {node: k for k, node in enumerate(g.nodes)}
        try:
            topo = list(nx.lexicographical_topological_sort(g, key=position.__getitem__))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(g)
            path = " -> ".join(str(u) for u, _ in cycle) + f" -> {cycle[0][0]}"
            raise InvalidProblemError(
                f"the graph has a cycle ({path}); a training graph must be acyclic"
            ) from None
        if order is None:
            order = g.graph.get("order")
        order = topo if order is None else _check_order(g, order)
        index = {node: k for k, node in enumerate(order)}

        def attr(node: Any, key: str, default: Any = None) -> Any:
            data = g.nodes[node]
            if key in data:
                return data[key]
            if default is None:
                raise InvalidProblemError(
                    f"graph node {node!r} has no attribute {key!r}; every node needs it "
                    f"(rename with the cost=/out_bytes=/is_backward= arguments)"
                )
            return default

        return cls(
            names=tuple(str(g.nodes[v].get("name", v)) for v in order),
            cost=tuple(attr(v, cost) for v in order),
            out_bytes=tuple(attr(v, out_bytes) for v in order),
            is_backward=tuple(bool(g.nodes[v].get(is_backward, False)) for v in order),
            rng=tuple(g.nodes[v].get("rng", "none") for v in order),
            role=tuple(g.nodes[v].get("role", "op") for v in order),
            edges=tuple((index[u], index[v]) for u, v in g.edges),
            cost_unit=cost_unit,
            name=str(g.graph.get("name", "")) if name is None else name,
            block=tuple(g.nodes[v]["block"] for v in order)
            if order and all("block" in g.nodes[v] for v in order)
            else (),
        )

    @classmethod
    def from_node_link(cls, data: Mapping[str, Any], *, cost_unit: CostUnit = "abstract") -> Graph:
        """Load networkx node-link JSON, including both schemas of the Checkmate/Moccasin graphs.

        Recognised node fields: ``cost``/``cost_cpu``/``duration`` (compute cost),
        ``out_bytes``/``cost_ram``/``out_cost`` (output size), ``is_backward``/``backward``,
        ``rng``, ``role``, ``block`` (on every node or on none). Links may be ``{"source",
        "target"}`` or ``{"0", "1"}`` objects. Node ids come from ``id`` or ``name`` and must be
        unique strings or integers. ``graph.order``, when given, lists every node id once in a
        topological order.

        Raises
        ------
        InvalidProblemError
            Naming the node, link or field that is not of the shape above.
        """
        # Long: each accepted key spelling with its own error, parsed in one place so the accepted
        # format reads top to bottom.
        if not isinstance(data, Mapping):
            raise InvalidProblemError(
                f"node-link data must be a JSON object, got {type(data).__name__}"
            )
        nodes = data.get("nodes")
        links = data.get("links", data.get("edges", []))
        meta = data.get("graph", {})
        if not isinstance(nodes, list) or not nodes:
            raise InvalidProblemError(
                f"node-link 'nodes' must be a non-empty list of node objects, got "
                f"{_shown(nodes)}; expected networkx node-link JSON"
            )
        if not isinstance(links, list):
            raise InvalidProblemError(
                f"node-link 'links' must be a list of link objects, got {_shown(links)}"
            )
        if not isinstance(meta, Mapping):
            raise InvalidProblemError(
                f"node-link 'graph' must be an object (name, order), got {_shown(meta)}"
            )
        g = nx.DiGraph(name=str(meta.get("name", "")))

        def pick(d: Mapping[str, Any], keys: tuple[str, ...], what: str, where: str) -> Any:
            for k in keys:
                if k in d:
                    return d[k]
            raise InvalidProblemError(
                f"{where} has no {what} field; expected one of {', '.join(keys)}"
            )

        blocks = []
        for k, d in enumerate(nodes):
            where = f"node-link nodes[{k}]"
            if not isinstance(d, Mapping):
                raise InvalidProblemError(f"{where} must be an object, got {_shown(d)}")
            node_id = _node_id(pick(d, ("id", "name"), "id", where), where)
            if node_id in g:
                raise InvalidProblemError(
                    f"{where} repeats node id {node_id!r}; every node needs its own id"
                )
            flag = d.get("is_backward", d.get("backward", False))
            if not isinstance(flag, bool):
                raise InvalidProblemError(
                    f"{where} ({node_id!r}) has is_backward {_shown(flag)}; use true or false"
                )
            for key in ("rng", "role"):
                if key in d and not isinstance(d[key], str):
                    raise InvalidProblemError(
                        f"{where} ({node_id!r}) has {key} {_shown(d[key])}; it must be a string"
                    )
            if "block" in d:
                b = d["block"]
                if isinstance(b, bool) or not isinstance(b, int):
                    raise InvalidProblemError(
                        f"{where} ({node_id!r}) has block {_shown(b)}; it must be an integer"
                    )
                blocks.append(b)
            g.add_node(
                node_id,
                **({"block": d["block"]} if "block" in d else {}),
                name=str(d.get("name", node_id)),
                cost=pick(d, ("cost", "cost_cpu", "duration"), "compute cost", where),
                out_bytes=pick(d, ("out_bytes", "cost_ram", "out_cost"), "output size", where),
                is_backward=flag,
                rng=d.get("rng", "none"),
                role=d.get("role", "op"),
            )
        if blocks and len(blocks) != len(nodes):
            raise InvalidProblemError(
                f"node-link 'block' is on {len(blocks)} of the {len(nodes)} nodes; give it on "
                f"every node or on none"
            )
        order = meta.get("order")
        if order is not None:
            if not isinstance(order, list):
                raise InvalidProblemError(
                    f"node-link graph.order must be a list of node ids, got {_shown(order)}"
                )
            g.graph["order"] = [_node_id(v, "node-link graph.order") for v in order]
        for k, link in enumerate(links):
            where = f"node-link links[{k}]"
            if not isinstance(link, Mapping):
                raise InvalidProblemError(
                    f"{where} must be an object with 'source' and 'target', got {_shown(link)}"
                )
            u = _node_id(pick(link, ("source", "0"), "source", where), where)
            v = _node_id(pick(link, ("target", "1"), "target", where), where)
            for end in (u, v):
                if end not in g:
                    raise InvalidProblemError(
                        f"{where} ({u!r}, {v!r}) names node {end!r}, which is not in 'nodes'"
                    )
            g.add_edge(u, v)
        return cls.from_networkx(g, cost_unit=cost_unit)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready body (without the format header)."""
        return {
            "kind": "graph",
            "name": self.name,
            "cost_unit": self.cost_unit,
            "sources_in_budget": self.sources_in_budget,
            "nodes": [
                {
                    "name": self.names[i],
                    "cost": self.cost[i],
                    "out_bytes": self.out_bytes[i],
                    "is_backward": self.is_backward[i],
                    "rng": self.rng[i],
                    "role": self.role[i],
                    **({"block": self.block[i]} if self.block else {}),
                }
                for i in range(self.size)
            ],
            "edges": [list(e) for e in self.edges],
            **({"states": self.states.to_dict()} if self.states is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Graph:
        """Build a graph from `to_dict` output."""
        nodes = data["nodes"]
        return cls(
            names=tuple(d["name"] for d in nodes),
            cost=tuple(d["cost"] for d in nodes),
            out_bytes=tuple(d["out_bytes"] for d in nodes),
            is_backward=tuple(d["is_backward"] for d in nodes),
            rng=tuple(d.get("rng", "none") for d in nodes),
            role=tuple(d.get("role", "op") for d in nodes),
            block=tuple(d["block"] for d in nodes) if nodes and "block" in nodes[0] else (),
            edges=tuple((int(u), int(v)) for u, v in data["edges"]),
            cost_unit=data.get("cost_unit", "seconds"),
            sources_in_budget=bool(data.get("sources_in_budget", False)),
            name=data.get("name", ""),
            states=(
                ModelStates.from_dict(data["states"]) if data.get("states") is not None else None
            ),
        )


def _shown(value: Any) -> str:
    """`value` for a message: its JSON type and a short repr."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else f"a {type(value).__name__}"
    )
    text = repr(value)
    return f"{kind} ({text[:40]}{'...' if len(text) > 40 else ''})"


def _node_id(value: Any, where: str) -> str | int:
    """A node-link id: a string or an integer (not a boolean, list, object or null)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidProblemError(
            f"{where}: node ids must be strings or integers, got {_shown(value)}"
        )
    return value


def _check_order(g: nx.DiGraph, order: Sequence[Any]) -> list[Any]:
    """`order` as a list after checking it is a topological order of every node of `g`."""
    order = list(order)
    try:
        position = {node: k for k, node in enumerate(order)}
    except TypeError:
        raise InvalidProblemError(f"order must list node ids, got {order[:5]!r}...") from None
    missing = [v for v in g.nodes if v not in position]
    extra = [v for v in order if v not in g]
    if missing or extra or len(position) != len(order):
        raise InvalidProblemError(
            f"order must list every node exactly once: missing {missing[:5]!r}, unknown "
            f"{extra[:5]!r}, {len(order) - len(position)} repeated; leave it out to number the "
            f"nodes in a topological order of our own"
        )
    for u, v in g.edges:
        if position[u] > position[v]:
            raise InvalidProblemError(
                f"order is not topological: {v!r} comes before its input {u!r}; leave it out to "
                f"number the nodes in a topological order of our own"
            )
    return order
