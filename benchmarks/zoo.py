"""The model zoo, end to end: every architecture family profiled with no ``blocks=``, solved with
`dp` (chain) and `hierarchical` (op level) at torch per-block's peak, applied and trained next to
plain autograd and torch's per-block checkpointing.

Columns: stages found from the call tree, op-graph nodes, solve seconds, predicted overhead
(recomputation time over store-all time) of dp / hierarchical / torch per-block at per-block's
predicted peak, dp's plan expanded onto the op graph and judged on the graph's costs (what
hierarchical's overhead compares with: the chain's stage times and the graph's op times are
measured separately, so the two dp columns differ by that noise; "(over)": the expanded plan
holds more than the budget on the graph), measured median step time (3 steps after a warm-up, round-robin), the measured
activation peak of ours against the prediction, and whether dp's and hierarchical's loss,
gradients and buffers equal plain autograd's bit for bit over two SGD steps.

    python benchmarks/zoo.py              # config 0 of every family, writes RESULTS.md "zoo"
    python benchmarks/zoo.py --size 1     # the larger configs (GPT-2 at 2,048 tokens, ...)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import checkpoint_solver as cs
from benchmarks._common import table, write_section
from checkpoint_solver import zoo
from checkpoint_solver.runtime import baselines
from checkpoint_solver.runtime.measure import train_step
from checkpoint_solver.solvers.baseline_plans import profile_blocks, torch_per_block
from checkpoint_solver.solvers.hierarchical import chain_schedule_on_graph
from tests.zoo.check import differences, reference, run_schedule


def _pct(x: float | None) -> str:
    return "—" if x is None else f"+{100 * x:.1f}%"


def _ms(xs: list[float]) -> str:
    return f"{1e3 * statistics.median(xs):.1f}"


def _time(models: dict[str, torch.nn.Module], inputs: object, steps: int) -> dict[str, list[float]]:
    """Round-robin timed steps (one warm-up each first)."""
    times: dict[str, list[float]] = {k: [] for k in models}
    for m in models.values():
        train_step(m, inputs)
    for _ in range(steps):
        for k, m in models.items():
            for p in m.parameters():
                p.grad = None
            t0 = time.perf_counter()
            train_step(m, inputs)
            times[k].append(time.perf_counter() - t0)
    return times


def run(name: str, size: int, steps: int) -> list[object]:
    torch.manual_seed(0)
    model, inputs = zoo.build(name, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cs.profile(model, inputs, warmup=1, repeats=3)  # chain and op graph
    chain = prof.chain
    first, count = profile_blocks([s.name for s in prof.stages])
    per_block = torch_per_block(chain, first, count)
    budget = per_block.predicted.peak_bytes
    t0 = time.perf_counter()
    dp = cs.solve(chain, budget, "dp")
    dp_s = time.perf_counter() - t0

    names = list(dict.fromkeys(m for s in prof.stages for m in s.modules))
    graph = prof.graph
    assert graph is not None, prof.measurement.get("graph_error")
    input_bytes = prof.measurement["input_bytes"]
    t0 = time.perf_counter()
    hier = None
    hier_note = ""
    try:
        hier = cs.solve(graph, budget - input_bytes, "hierarchical")
    except cs.InfeasibleBudgetError as exc:
        hier_note = f"infeasible (min {cs.format_bytes(exc.min_budget_bytes + input_bytes)})"
    hier_s = time.perf_counter() - t0
    # dp's plan on the graph's costs: hierarchical's overhead is compared with this one (the
    # chain's stage times and the graph's op times are measured separately).
    dp_on_graph = chain_schedule_on_graph(graph, dp)
    fits = dp_on_graph.predicted.peak_bytes + input_bytes <= budget

    ref = reference(model, inputs)
    got_dp = run_schedule(model, inputs, prof, dp)
    exact = not differences(ref, got_dp)
    if hier is not None:
        exact_h = not differences(ref, run_schedule(model, inputs, prof, hier))
    models = {
        "plain": copy.deepcopy(model),
        "per-block": baselines.checkpoint_per_block(copy.deepcopy(model), names),
        "dp": cs.apply(copy.deepcopy(model), dp, prof),
    }
    if hier is not None:
        models["hierarchical"] = cs.apply(copy.deepcopy(model), hier, prof)
    times = _time(models, inputs, steps)
    return [
        f"{name} ({size})",
        f"{len([s for s in prof.stages if s.modules])}",
        graph.size,
        f"{dp_s:.2f} / {hier_s:.1f}",
        cs.format_bytes(budget),
        _pct(dp.predicted.overhead),
        _pct(dp_on_graph.predicted.overhead) + ("" if fits else " (over)"),
        _pct(hier.predicted.overhead) if hier is not None else hier_note,
        _pct(per_block.predicted.overhead),
        f"{_ms(times['plain'])} / {_ms(times['per-block'])} / {_ms(times['dp'])}"
        + (f" / {_ms(times['hierarchical'])}" if hier is not None else " / —"),
        f"{got_dp.peak_bytes / dp.predicted.peak_bytes:.3f}",
        ("yes" if exact else "NO") + " / " + ("—" if hier is None else "yes" if exact_h else "NO"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=0, choices=(0, 1))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="families to run")
    args = ap.parse_args()
    rows = []
    for name in args.only or list(zoo.FAMILIES):
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows.append(run(name, args.size, args.steps))
    headers = [
        "model (config)",
        "stages",
        "graph nodes",
        "solve s dp / hier",
        "budget (per-block peak)",
        "dp overhead",
        "dp's plan on the graph",
        "hierarchical overhead",
        "per-block overhead",
        "step ms plain / per-block / dp / hier",
        "dp measured / predicted peak",
        "bitwise dp / hier",
    ]
    body = (
        f"Config {args.size} of each `checkpoint_solver.zoo` family, profiled with no `blocks=`; "
        "budget = torch per-block's predicted peak (activations, inputs included); overheads "
        "predicted (recomputation / store-all time), dp's on the chain's costs and, next to it, "
        "dp's plan on the op graph's costs, which hierarchical's compares with; step times "
        "measured, median of "
        f"{args.steps}, CPU (noisy: differences under ~10 % are ties).\n\n" + table(headers, rows)
    )
    print(body)
    write_section("zoo" if args.size == 0 else "zoo_large", body)


if __name__ == "__main__":
    main()
