"""Graph construction, validation and node-link loading."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from checkpoint_solver import Graph, InvalidProblemError, load_problem, min_budget
from checkpoint_solver.problem.synthetic import diamond_graph, linear_graph, random_dag


def test_from_networkx_renumbers_in_topological_order() -> None:
    """Nodes are renumbered so every edge goes forward, names kept."""
    g = nx.DiGraph()
    g.add_node("late", cost=1, out_bytes=3)
    g.add_node("early", cost=2, out_bytes=5)
    g.add_edge("early", "late")
    graph = Graph.from_networkx(g)
    assert graph.names == ("early", "late")
    assert graph.edges == ((0, 1),)
    assert graph.out_bytes == (5, 3)
    assert graph.preds == ((), (0,)) and graph.succs == ((1,), ())


def test_cycle_is_rejected_with_the_cycle_named() -> None:
    """A cyclic graph raises InvalidProblemError that shows a cycle."""
    g = nx.DiGraph()
    for v in "abc":
        g.add_node(v, cost=1, out_bytes=1)
    g.add_edges_from([("a", "b"), ("b", "c"), ("c", "a")])
    with pytest.raises(InvalidProblemError, match=r"cycle \(a -> b -> c -> a\)"):
        Graph.from_networkx(g)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"edges": ((0, 5),)}, r"names a node outside 0..2"),
        ({"edges": ((1, 0),)}, r"goes backwards"),
        ({"out_bytes": (1, -2, 3)}, r"out_bytes of node 1"),
        ({"cost": (1.0, float("inf"), 1.0)}, r"cost of node 1"),
        ({"rng": ("none", "dice", "none")}, r"rng of node 1"),
        ({"role": ("op", "weights", "op")}, r"role of node 1"),
        ({"role": ("op", "param", "op"), "edges": ((0, 1),)}, r"is an param but has inputs"),
        ({"is_backward": (False,)}, r"is_backward has 1 entries"),
    ],
)
def test_inconsistent_graphs_are_rejected(kwargs: dict[str, object], match: str) -> None:
    """Missing inputs, backward edges, bad sizes, costs, policies and roles raise."""
    fields: dict[str, object] = dict(
        names=("a", "b", "c"),
        cost=(1.0, 1.0, 1.0),
        out_bytes=(1, 1, 1),
        is_backward=(False, False, True),
        edges=((0, 1), (1, 2)),
    )
    fields.update(kwargs)
    with pytest.raises(InvalidProblemError, match=match):
        Graph(**fields)  # type: ignore[arg-type]


def test_missing_attribute_is_named() -> None:
    """A networkx node without a cost is rejected, naming the node and the attribute."""
    g = nx.DiGraph()
    g.add_node("a", out_bytes=1)
    with pytest.raises(InvalidProblemError, match=r"node 'a' has no attribute 'cost'"):
        Graph.from_networkx(g)


def test_node_link_with_missing_endpoint() -> None:
    """A link to a node that is not listed is rejected."""
    data = {"nodes": [{"id": 0, "cost": 1, "out_bytes": 1}], "links": [{"source": 0, "target": 7}]}
    with pytest.raises(InvalidProblemError, match=r"names node 7"):
        Graph.from_node_link(data)


@pytest.mark.parametrize(
    ("name", "nodes", "edges"),
    [
        ("vgg16_train", 45, 87),
        ("vgg19_train", 51, 99),
        ("fcn8_vgg_train", 73, 149),
        ("mobilenet_train", 185, 367),
        ("random_layered_n100", 100, 236),
        ("random_layered_n250", 250, 944),
    ],
)
def test_checkmate_graphs_load(checkmate_dir, name: str, nodes: int, edges: int) -> None:
    """Both node schemas of the reference graphs load with the published node and edge counts."""
    graph = load_problem(checkmate_dir / f"{name}.json")
    assert isinstance(graph, Graph)
    assert (graph.size, len(graph.edges)) == (nodes, edges)
    raw = json.loads((checkmate_dir / f"{name}.json").read_text())
    assert sum(graph.out_bytes) == sum(n.get("cost_ram", n.get("out_cost")) for n in raw["nodes"])
    if name.startswith("vgg"):
        assert any(graph.is_backward) and not all(graph.is_backward)


def test_networkx_round_trip() -> None:
    """to_networkx then from_networkx gives the same graph."""
    g = random_dag(12, seed=5)
    assert Graph.from_networkx(g.to_networkx(), cost_unit="abstract", name=g.name) == g


def test_synthetic_graphs_are_well_formed() -> None:
    """The linear and diamond generators give the expected shapes."""
    lin = linear_graph(3)
    assert lin.size == 6 and lin.is_backward == (False,) * 3 + (True,) * 3
    assert (0, 4) in lin.edges  # the backward of f1 reads f1's input f0
    assert diamond_graph().preds[3] == (1, 2)


def _keep_all_peak(n: int, edges: list[tuple[int, int]], size: list[int], order: list[int]) -> int:
    """Peak of computing each node once in `order`, each output freed after its last reader."""
    position = {v: k for k, v in enumerate(order)}
    last = {v: position[v] for v in range(n)}
    for u, v in edges:
        last[u] = max(last[u], position[v])
    live = peak = 0
    for step, v in enumerate(order):
        live += size[v]
        peak = max(peak, live)
        live -= sum(size[u] for u in range(n) if last[u] == step)
    return peak


@pytest.mark.parametrize("name", ["random_layered_n100", "random_layered_n250"])
def test_node_link_keeps_the_files_order(checkmate_dir, name: str) -> None:
    """The Moccasin files carry graph["order"]: nodes are numbered in it, so store_all's peak is
    that order's (the one Moccasin's budgets refer to)."""
    raw = json.loads((checkmate_dir / f"{name}.json").read_text())
    order = raw["graph"]["order"]
    graph = load_problem(checkmate_dir / f"{name}.json")
    assert list(graph.names) == [str(v) for v in order]
    ids = {d["name"]: k for k, d in enumerate(raw["nodes"])}
    edges = [(ids[link["0"]], ids[link["1"]]) for link in raw["links"]]
    size = [d["out_cost"] for d in raw["nodes"]]
    expected = _keep_all_peak(len(size), edges, size, [ids[v] for v in order])
    assert min_budget(graph, "store_all") == expected


def test_an_order_that_is_not_topological_is_refused() -> None:
    """A given order must list every node once, each after its inputs."""
    nodes = [{"id": k, "cost": 1, "out_bytes": 1} for k in range(3)]
    links = [{"source": 0, "target": 1}, {"source": 1, "target": 2}]
    ok = Graph.from_node_link({"nodes": nodes, "links": links, "graph": {"order": [0, 1, 2]}})
    assert ok.names == ("0", "1", "2")
    with pytest.raises(InvalidProblemError, match=r"2 comes before its input 1"):
        Graph.from_node_link({"nodes": nodes, "links": links, "graph": {"order": [0, 2, 1]}})
    with pytest.raises(InvalidProblemError, match=r"every node exactly once: missing \[2\]"):
        Graph.from_node_link({"nodes": nodes, "links": links, "graph": {"order": [0, 1]}})
