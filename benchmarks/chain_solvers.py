"""Chain solvers: DP solve time, one-table trade-off time, and predicted overhead at equal budgets.

Prints tables and writes the "chain_solvers" section of benchmarks/RESULTS.md. Not a timed test.

    python benchmarks/chain_solvers.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import table, write_section
from checkpoint_solver import InfeasibleBudgetError, format_bytes, min_budget, solve, tradeoff
from checkpoint_solver.problem import Chain
from checkpoint_solver.problem.synthetic import transformer_chain, uniform_chain
from checkpoint_solver.simulation import simulate_ops
from checkpoint_solver.solvers.store_all import min_budget_store_all


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def envelope(chain: Chain) -> Chain:
    """The uniform chain whose every stage is as large and as slow as the chain's largest/slowest."""
    n = chain.length
    return Chain(
        uf=(max(chain.uf),) * n,
        ub=(max(chain.ub),) * n,
        x=(chain.x[0],) + (max(chain.x[1:]),) * n,
        xbar=(max(chain.xbar),) * n,
        of=(max(chain.of),) * n,
        ob=(max(chain.ob),) * n,
        cost_unit=chain.cost_unit,
    )


def revolve_on(chain: Chain, budget: int) -> tuple[float, int] | None:
    """Revolve planned on the uniform envelope, replayed on the real chain: (overhead, peak)."""
    env = envelope(chain)
    try:
        plan = solve(env, budget, "revolve")
    except InfeasibleBudgetError:
        return None
    report = simulate_ops(chain, plan.ops, budget_bytes=budget)
    if not report.valid:
        return None
    return report.overhead, report.peak_bytes


def overhead_of(chain: Chain, budget: int, solver: str, **options) -> str:
    try:
        return f"{solve(chain, budget, solver, **options).predicted.overhead:+.1%}"
    except InfeasibleBudgetError:
        return "infeasible"


def main() -> None:
    out = []
    # 1. DP solve time at 500 slots (median of 3), budget halfway between minimum and store-all.
    rows = []
    for layers in (12, 24, 49, 99):
        chain = transformer_chain(layers)
        low, high = min_budget(chain, "dp"), min_budget_store_all(chain)
        budget = (low + high) // 2
        t_nb, s = timed(lambda c=chain, b=budget: solve(c, b, "dp", bound=False))
        t_b, sb = timed(lambda c=chain, b=budget: solve(c, b, "dp"), repeat=1 if layers > 50 else 3)
        gap = "—" if sb.gap is None else f"{sb.gap:.2%}"
        rows.append(
            [
                chain.length,
                format_bytes(budget),
                f"{t_nb:.3f}",
                f"{t_b:.3f}",
                sb.status.value,
                gap,
                f"{s.predicted.overhead:+.1%}",
            ]
        )
    dp_table = table(
        [
            "L (stages)",
            "budget",
            "dp solve s",
            "dp solve s with bound",
            "status",
            "gap",
            "overhead",
        ],
        rows,
    )
    print(dp_table)
    out.append(
        "### DP solve time (500 memory slots)\n\nGPT-style chains from "
        "`transformer_chain(n_layers)` (embedding, attention + MLP per layer, head; "
        "b=8, s=1024, h=1024), budget halfway between the DP's minimum and the store-all "
        'peak; median of 3 runs. "with bound" also solves the rounded-down relaxation '
        "that gives the lower bound and gap. Goals: L=100 ≤ 0.5 s, L=200 ≤ 5 s.\n\n" + dp_table
    )

    # 2. Trade-off curve: 50 budgets from one table, L = 100.
    chain = transformer_chain(49)
    t_curve, curve = timed(lambda: tradeoff(chain, solver="dp", points=50, bound=False))
    t_curve_b, _ = timed(lambda: tradeoff(chain, solver="dp", points=50), repeat=1)
    line = (
        f"L={chain.length}: 50-budget dp trade-off curve in {t_curve:.3f} s from one table "
        f"({t_curve_b:.3f} s with the lower-bound table too); goal ≤ 1 s. Overheads from "
        f"{curve[0].overhead:+.1%} at {format_bytes(curve[0].budget_bytes)} to "
        f"{curve[-1].overhead:+.1%} at {format_bytes(curve[-1].budget_bytes)}."
    )
    print(line)
    out.append("### Trade-off curve\n\n" + line)

    # 3. Revolve generation time.
    t_rev, sched = timed(lambda: solve(uniform_chain(10_000), 10**12, "revolve", snapshots=64))
    line = f"revolve, l=10,000, s=64: {t_rev:.3f} s for {len(sched.ops):,} ops (median of 3)."
    print(line)
    out.append("### Revolve\n\n" + line)

    # 4. Predicted overhead at equal budgets.
    for layers in (6, 24):
        chain = transformer_chain(layers)
        low, high = min_budget(chain, "dp"), min_budget_store_all(chain)
        rows = []
        for frac in (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0):
            budget = int(low + frac * (high - low))
            rev = revolve_on(chain, budget)
            rows.append(
                [
                    f"{format_bytes(budget)} ({budget / high:.0%})",
                    overhead_of(chain, budget, "dp"),
                    overhead_of(chain, budget, "uniform"),
                    overhead_of(chain, budget, "sqrt"),
                    "infeasible" if rev is None else f"{rev[0]:+.1%}",
                ]
            )
        t = table(
            ["budget (of store-all peak)", "dp", "uniform (best k)", "sqrt", "revolve (envelope)"],
            rows,
        )
        print(f"\ntransformer_chain({layers}), L={chain.length}\n{t}")
        out.append(
            f"### Predicted overhead at equal budgets: GPT-style, {layers} layers (L={chain.length})\n\n"
            "Overhead = recomputation time / store-all time. `uniform` is "
            "`checkpoint_sequential`'s rule with the fastest segment count that fits; "
            "`revolve` is planned on the chain's uniform envelope (every stage as large as "
            "the largest) and replayed on the real chain.\n\n" + t
        )
    chain = uniform_chain(60, x=10, xbar=30, of=5, ob=10)
    low, high = min_budget(chain, "dp"), min_budget_store_all(chain)
    rows = []
    for frac in (0.0, 0.1, 0.25, 0.5, 1.0):
        budget = int(low + frac * (high - low))
        rows.append(
            [
                budget,
                overhead_of(chain, budget, "dp"),
                overhead_of(chain, budget, "revolve"),
                overhead_of(chain, budget, "uniform"),
                overhead_of(chain, budget, "sqrt"),
            ]
        )
    t = table(["budget (bytes)", "dp", "revolve", "uniform", "sqrt"], rows)
    print(f"\nuniform_chain(60)\n{t}")
    out.append(
        "### Predicted overhead on a uniform chain (L=60; x=10, xbar=30, of=5, ob=10)\n\n" + t
    )
    write_section("chain_solvers", "\n\n".join(out))


if __name__ == "__main__":
    main()
