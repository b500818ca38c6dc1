"""The executor against what users do today, all measured in one run on one model.

A Hugging Face GPT-2 built from a config (random weights) is profiled once; then, side by side:
plain autograd, torch's per-block checkpointing (``use_reentrant=False``), torch's
``checkpoint_sequential`` rule with 2 and 4 segments, and our schedules from ``dp``, ``revolve`` and
``sqrt`` applied with `checkpoint_solver.apply`, at budgets from dp's minimum to store-all and at the
measured peaks of the torch baselines. For each: the simulator's predicted peak (ours), the measured
activation peak of one training step (the live-storage tracker on CPU, counting what the profiler
counts: inputs, activations, saved tensors, activation gradients, temporaries; on CUDA also
``max_memory_allocated`` above the step's start), the median step time of `--repeats` steps, and
the slowdown against plain autograd. Gradients are checked equal to plain autograd for every row.

    python benchmarks/runtime.py [--layers 8] [--repeats 7] [--device cuda]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import checkpoint_solver as cs
from benchmarks._common import table, write_section
from checkpoint_solver import format_bytes, models
from checkpoint_solver.runtime import baselines
from checkpoint_solver.runtime.measure import measure_step, time_steps
from checkpoint_solver.solvers.baseline_plans import torch_per_block, torch_sequential

# A 10-stage chain solves in milliseconds even at 5,000 memory slots; at the default 500 the
# rounding costs dp a few points at budgets set by other methods' exact peaks.
DP_SLOTS = 5000


def gpt2(layers: int, device: str):
    model, inputs = models.hf_gpt2(layers=layers, dim=256, heads=4, context=128, vocab=8192)
    return model.to(device), {k: v.to(device) for k, v in inputs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, inputs = gpt2(args.layers, args.device)
    prof = cs.profile(model, inputs, blocks="transformer.h", repeats=5, graph=False)
    chain = prof.chain
    cuda = args.device == "cuda"

    reference = copy.deepcopy(model)
    torch.manual_seed(0)
    ref = measure_step(reference, inputs)
    ref_grads = [p.grad for p in reference.parameters()]
    rows: list[dict] = []

    def add(label: str, wrap, sched=None, budget: int | None = None, sim=None) -> dict:
        """Wrap a copy of the model, measure one step's peak and check its gradients."""
        m = wrap(copy.deepcopy(model))
        torch.manual_seed(0)
        got = measure_step(m, inputs)
        exact = torch.equal(got.loss, ref.loss) and all(
            torch.equal(p.grad, g) for p, g in zip(m.parameters(), ref_grads, strict=True)
        )
        row = {
            "label": label,
            "model": m,
            "budget": budget,
            "predicted": sched.predicted.peak_bytes if sched else sim and sim.peak_bytes,
            "overhead": sched.predicted.overhead if sched else sim and sim.overhead,
            "peak": got.peak_bytes,
            "cuda_peak": got.cuda_peak_bytes,
            "exact": exact,
            "times": [],
        }
        rows.append(row)
        print(f"{label:40} peak {format_bytes(got.peak_bytes):>10}  exact={exact}", flush=True)
        return row

    nb = args.layers
    first = 1 + (prof.stages[0].name == "prologue")
    add("no checkpointing", baselines.no_checkpoint)
    per_block = add(
        "torch checkpoint per block",
        baselines.checkpoint_per_block,
        sim=cs.simulate(chain, torch_per_block(chain, first, nb)),
    )
    seq = {
        k: add(
            f"torch checkpoint_sequential, {k} segments",
            lambda m, k=k: baselines.checkpoint_sequential(m, k),
            sim=cs.simulate(chain, torch_sequential(chain, k, first, nb)),
        )
        for k in (2, 4)
    }

    def ours(solver: str, budget: int, why: str) -> None:
        options = {"mem_slots": DP_SLOTS} if solver == "dp" else {}
        try:
            sched = cs.solve(chain, budget, solver, **options)
        except cs.InfeasibleBudgetError:
            print(f"{solver} @ {why}: infeasible")
            return
        add(f"{solver} @ {why}", lambda m: cs.apply(m, sched, prof), sched, budget)

    low = cs.min_budget(chain, "dp")
    high = cs.min_budget(chain, "store_all")
    for why, budget in [
        ("dp minimum", low),
        ("25 %", low + (high - low) // 4),
        ("50 %", low + (high - low) // 2),
        ("75 %", low + 3 * (high - low) // 4),
        ("store-all", high),
        ("per-block's peak", per_block["peak"]),
        ("sequential-4's peak", seq[4]["peak"]),
        ("sequential-2's peak", seq[2]["peak"]),
    ]:
        ours("dp", budget, why)
        if why in ("dp minimum", "per-block's peak", "sequential-4's peak"):
            ours("revolve", budget, why)
        if why == "store-all":
            ours("sqrt", budget, why)

    # Time round-robin, one step per method per round, so drift hits every method alike.
    for r in range(args.repeats + 1):
        for row in rows:
            t = time_steps(row["model"], inputs, warmup=0, repeats=1)[0]
            if r:  # round 0 warms up
                row["times"].append(t)
        print(f"timing round {r}/{args.repeats}", flush=True)
    for row in rows:
        row["seconds"] = statistics.median(row["times"])
        row["best"] = min(row["times"])
    plain_s = rows[0]["seconds"]
    plain_best = rows[0]["best"]

    def pct(row: dict) -> str:
        return f"{row['seconds'] / plain_s - 1:+.1%}"

    headers = ["method", "budget", "predicted peak", "measured peak"]
    if cuda:
        headers.append("CUDA max allocated")
    headers += [
        "predicted overhead",
        "step (median)",
        "vs no checkpointing",
        "step (fastest)",
        "vs no checkpointing",
        "gradients",
    ]
    body_rows = []
    for r in rows:
        line = [
            r["label"],
            format_bytes(r["budget"]) if r["budget"] else "-",
            format_bytes(r["predicted"]) if r["predicted"] else "-",
            format_bytes(r["peak"]),
        ]
        if cuda:
            line.append(format_bytes(r["cuda_peak"]))
        line += [
            f"{r['overhead']:+.1%}" if r["overhead"] is not None else "-",
            f"{r['seconds'] * 1e3:.1f} ms",
            pct(r),
            f"{r['best'] * 1e3:.1f} ms",
            f"{r['best'] / plain_best - 1:+.1%}",
            "bitwise equal" if r["exact"] else "DIFFER",
        ]
        body_rows.append(line)

    store = next(r for r in rows if r["label"] == "dp @ store-all")
    at_pb = next(r for r in rows if r["label"] == "dp @ per-block's peak")
    worst = max((r["peak"] / r["predicted"] for r in rows if r["predicted"]), default=float("nan"))
    over = [r["label"] for r in rows if r["budget"] and r["peak"] > r["budget"]]
    pb_sim = per_block["overhead"]
    summary = [
        f"- dp at the store-all budget: {store['seconds'] / plain_s:.3f}x plain autograd's median "
        f"step ({store['best'] / plain_best:.3f}x its fastest) (goal <= 1.02x).",
        f"- dp at torch per-block checkpointing's measured peak "
        f"({format_bytes(per_block['peak'])}): {at_pb['seconds'] / per_block['seconds']:.3f}x "
        f"per-block's median step ({at_pb['best'] / per_block['best']:.3f}x its fastest) (goal "
        f"<= 0.85x); predicted overhead {at_pb['overhead']:+.1%}, measured peak "
        f"{format_bytes(at_pb['peak'])}.",
        f"- At that budget dp's optimum is torch per-block's own schedule or as fast: simulated "
        f"on this profile, per-block checkpointing costs {pb_sim:+.1%} and dp finds "
        f"{at_pb['overhead']:+.1%}. The peak of both is the loss's backward, when every kept "
        f"boundary is live, so no budget is left to keep a block's tape: the 0.85x goal cannot "
        f"be met on this model at that memory (see the note on issue 6).",
        f"- Largest measured/predicted peak over all rows (torch's rows: their schedules "
        f"simulated on the profile): {worst:.4f} (goal <= 1.05); rows "
        f"above their budget: {', '.join(over) or 'none'}.",
        "- Step times on this shared 2-core VM vary by 10-25 % from step to step and run to "
        "run (compare the median and fastest columns), so ratios near 1 are within noise.",
        f"- Every row's loss and gradients bitwise equal to plain autograd: "
        f"{all(r['exact'] for r in rows)}.",
    ]
    body = "\n".join(
        [
            f"GPT-2 from a config ({args.layers} layers, n_embd 256, 4 heads, vocab 8192, batch 8 "
            f"x 128 tokens, dropout 0.1), device `{args.device}` "
            f"({prof.source.get('device_name', '')}); {chain.length} stages. Peaks are activation "
            f"bytes as the profiler counts them (parameters and their gradients, "
            f"{format_bytes(2 * prof.source['parameter_bytes'])} here, come on top). Step time: "
            f"median and fastest of {args.repeats} steps, timed round-robin (one step of each method per "
            f"round, after a warm-up round) so that drift on a shared machine hits all alike; "
            f"predicted overhead is the simulator's, from the profiled stage times. dp runs "
            f"with {DP_SLOTS} memory slots. Percentages are by how much a "
            f"median step is slower than plain autograd's ({plain_s * 1e3:.1f} ms).",
            "",
            table(headers, body_rows),
            "",
            *summary,
        ]
    )
    print(body)
    write_section("runtime" if not cuda else "runtime-cuda", body)


if __name__ == "__main__":
    main()
