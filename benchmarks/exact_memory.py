"""Predicted against measured activation peaks of chain schedules, on every zoo family.

For each family (config 0 by default) the profile's chain is solved four ways: no checkpointing
(`store_all`), torch per-block (every block checkpointed, replayed by our executor), `dp` at its
minimum and `dp` halfway to store-all; and the op graph by `hierarchical` halfway between its
minimum and store-all (replayed op by op; its prediction is the graph's peak plus the inputs). Each schedule is applied, one step is run (the executor's
first step learns which values its reruns read), then the measured step's activation peak (the
live-storage tracker) is divided by the simulator's prediction. 1.000 is exact; above 1 breaks
the budget, below 1 wastes memory.

    python benchmarks/exact_memory.py            # writes RESULTS.md "exact_memory"
    python benchmarks/exact_memory.py --size 1   # the larger configs
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import checkpoint_solver as cs
from benchmarks._common import table, write_section, zoo_arguments
from checkpoint_solver import zoo
from checkpoint_solver.runtime.measure import measure_step
from checkpoint_solver.solvers.baseline_plans import profile_blocks, torch_per_block


def _ratio(model: torch.nn.Module, inputs: object, prof: cs.Profile, sched: cs.Schedule) -> str:
    m = copy.deepcopy(model)
    cs.apply(m, sched, prof)
    torch.manual_seed(0)
    measure_step(m, inputs)
    torch.manual_seed(0)
    got = measure_step(m, inputs)
    return f"{got.peak_bytes / sched.predicted.peak_bytes:.3f}"


def run(name: str, size: int) -> list[object]:
    model, inputs = zoo.build(name, size)
    prof = cs.profile(model, inputs, warmup=1, repeats=1)
    chain = prof.chain
    first, count = profile_blocks([s.name for s in prof.stages])
    low, high = cs.min_budget(chain, "dp"), cs.min_budget(chain, "store_all")
    scheds = [
        cs.solve(chain, high, "store_all"),
        torch_per_block(chain, first, count),
        cs.solve(chain, low, "dp"),
        cs.solve(chain, (low + high) // 2, "dp"),
    ]
    cells = [
        f"{_ratio(model, inputs, prof, s)} ({cs.format_bytes(s.predicted.peak_bytes)})"
        for s in scheds
    ]
    hier = "-"
    if prof.graph is not None:
        # The op graph leaves the inputs out of its memory: the prediction is its peak plus them.
        g = prof.graph
        x0 = prof.measurement["input_bytes"]
        lo, hi = cs.min_budget(g, "hierarchical"), cs.min_budget(g, "store_all")
        sched = cs.solve(g, (lo + hi) // 2, "hierarchical")
        m = copy.deepcopy(model)
        cs.apply(m, sched, prof)
        torch.manual_seed(0)
        measure_step(m, inputs)
        torch.manual_seed(0)
        got = measure_step(m, inputs).peak_bytes
        predicted = sched.predicted.peak_bytes + x0
        hier = f"{got / predicted:.3f} ({cs.format_bytes(predicted)})"
    return [name, cs.format_bytes(prof.measurement["activation_peak_bytes"]), *cells, hier]


def main() -> None:
    size, families = zoo_arguments(__doc__)
    rows = [run(name, size) for name in families]
    headers = [
        "model",
        "plain peak (measured)",
        "store-all",
        "torch per-block",
        "dp at its minimum",
        "dp halfway",
        "hierarchical halfway",
    ]
    body = (
        f"Config {size} of each family; each cell: measured / predicted activation peak "
        f"(prediction in brackets), the step after a first one.\n\n" + table(headers, rows)
    )
    print(body)
    write_section("exact_memory", body)


if __name__ == "__main__":
    main()
