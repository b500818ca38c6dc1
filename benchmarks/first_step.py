"""The first training step after `cs.apply`, with and without the probe that learns what the
kept boundaries hold: measured / predicted activation peak of that first step.

    python benchmarks/first_step.py            # writes RESULTS.md "first_step"
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


def run(name: str, size: int) -> list[object]:
    model, inputs = zoo.build(name, size)
    prof = cs.profile(model, inputs, warmup=1, repeats=1, graph=False)
    low, high = cs.min_budget(prof.chain, "dp"), cs.min_budget(prof.chain, "store_all")
    sched = cs.solve(prof.chain, (low + high) // 2, "dp")
    cells: list[object] = [name, cs.format_bytes(sched.predicted.peak_bytes)]
    for probe in (False, True):
        m = copy.deepcopy(model)
        cs.apply(m, sched, prof, probe=probe)
        torch.manual_seed(0)
        cells.append(f"{measure_step(m, inputs).peak_bytes / sched.predicted.peak_bytes:.3f}")
    return cells


def main() -> None:
    size, families = zoo_arguments(__doc__)
    rows = [run(name, size) for name in families]
    body = (
        f"Config {size} of each family, `dp` halfway between its minimum and store-all; the first "
        f"step's measured / predicted activation peak.\n\n"
        + table(["model", "predicted", "first step, probe=False", "first step, probe=True"], rows)
    )
    print(body)
    write_section("first_step", body)


if __name__ == "__main__":
    main()
