"""Whole-step budgets: predicted against measured whole-step peaks, and what knowing the model
states buys over subtracting them by hand.

For each zoo family (config 0 by default) the model is profiled with AdamW
(``cs.profile(..., optimizer=opt)``), so its chain and op graph carry the step's model states.
Five schedules (no checkpointing, torch per-block, `dp` at its minimum and `dp` halfway on the
chain, `hierarchical` halfway on the op graph) are applied
and a whole step is measured (forward, backward, ``optimizer.step()``; every live tensor
counted: parameters, optimizer state, gradients) after a first one; each cell is measured /
predicted. Then, at three whole-step budgets between `dp`'s minimum and store-all, the
whole-step-aware `dp` is compared with `dp` at the budget less parameters, optimizer state and
every gradient (what a user does by hand): predicted overheads, and the aware schedule's
measured peak against the budget.

    python benchmarks/whole_step.py            # writes RESULTS.md "whole_step"
    python benchmarks/whole_step.py --size 1   # the larger configs
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import checkpoint_solver as cs
from benchmarks._common import table, write_section, zoo_arguments
from checkpoint_solver import zoo
from checkpoint_solver.errors import InfeasibleBudgetError
from checkpoint_solver.runtime.measure import measure_step
from checkpoint_solver.solvers.baseline_plans import profile_blocks, torch_per_block


def _measured(model: torch.nn.Module, inputs: object, prof: cs.Profile, sched: cs.Schedule) -> int:
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters())
    cs.apply(m, sched, prof)
    torch.manual_seed(0)
    measure_step(m, inputs, optimizer=opt)
    torch.manual_seed(0)
    got = measure_step(m, inputs, optimizer=opt).step_peak_bytes
    assert got is not None
    return got


def run(name: str, size: int) -> tuple[list[object], list[list[object]]]:
    model, inputs = zoo.build(name, size)
    prof = cs.profile(
        model, inputs, warmup=1, repeats=1, optimizer=torch.optim.AdamW(model.parameters())
    )
    chain = prof.chain
    st = chain.states
    assert st is not None
    first, count = profile_blocks([s.name for s in prof.stages])
    low, high = cs.min_budget(chain, "dp"), cs.min_budget(chain, "store_all")
    scheds = [
        cs.solve(chain, high, "store_all"),
        torch_per_block(chain, first, count),
        cs.solve(chain, low, "dp"),
        cs.solve(chain, (low + high) // 2, "dp"),
    ]
    if prof.graph is not None:
        g = prof.graph
        lo, hi = cs.min_budget(g, "hierarchical"), cs.min_budget(g, "store_all")
        scheds.append(cs.solve(g, (lo + hi) // 2, "hierarchical"))
    row = [
        name,
        cs.format_bytes(st.params + st.optimizer + st.grad_bytes),
        *(
            f"{_measured(model, inputs, prof, s) / s.predicted.peak_bytes:.3f} "
            f"({cs.format_bytes(s.predicted.peak_bytes)})"
            for s in scheds
        ),
    ]
    row += ["-"] * (7 - len(row))
    bare = dataclasses.replace(chain, states=None)
    states = st.params + st.optimizer + st.grad_bytes
    versus = []
    for frac in (0.1, 0.25, 0.5):
        budget = low + int((high - low) * frac)
        aware = cs.solve(chain, budget, "dp")
        try:
            by_hand = cs.solve(bare, budget - states, "dp")
            whole = cs.simulate(chain, by_hand.replace(scope="step", budget_bytes=2**62))
            hand = f"{by_hand.predicted.overhead:+.1%}"
            hand_fits = f"{whole.peak_bytes / budget:.3f}"
        except InfeasibleBudgetError:
            hand, hand_fits = "infeasible", "-"
        got = _measured(model, inputs, prof, aware)
        versus.append(
            [
                name,
                cs.format_bytes(budget),
                f"{aware.predicted.overhead:+.1%}",
                hand,
                hand_fits,
                f"{got / budget:.3f}",
            ]
        )
    return row, versus


def main() -> None:
    size, families = zoo_arguments(__doc__)
    rows, versus = [], []
    for name in families:
        row, vs = run(name, size)
        rows.append(row)
        versus.extend(vs)
    headers = [
        "model",
        "model states",
        "store-all",
        "torch per-block",
        "dp at its minimum",
        "dp halfway",
        "hierarchical halfway",
    ]
    body = (
        f"Config {size} of each family, AdamW; each cell: measured / predicted whole-step "
        f"peak (prediction in brackets), the step after a first one. Model states: parameters "
        f"+ optimizer state + gradients.\n\n"
        + table(headers, rows)
        + "\n\nAt a whole-step budget: `dp` knowing the model states (gradients appear during "
        "the backward) against `dp` at the budget less every model state (by hand); predicted "
        "overheads; the by-hand schedule's predicted whole-step peak / budget (above 1: the "
        "by-hand budget forgot the optimizer step's temporaries or a gradient summed out of "
        "place, and breaks the budget); the aware schedule's measured whole-step peak / "
        "budget.\n\n"
        + table(
            [
                "model",
                "whole-step budget",
                "dp, whole step",
                "dp, by hand",
                "by hand: peak / budget",
                "whole step: measured / budget",
            ],
            versus,
        )
    )
    print(body)
    write_section("whole_step", body)


if __name__ == "__main__":
    main()
