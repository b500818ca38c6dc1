"""Op-level schedules on real models: hierarchical DP over per-block options vs block-level DP.

1. The built-in GPT-style model (whole model captured as one region with its blocks; dropout 0.1):
   at budgets from block-level dp's minimum to store-all, the predicted overhead of block-level
   ``dp`` and of ``hierarchical`` on the same graph and costs, then both applied with
   `checkpoint_solver.apply` and measured (activation peak of one step under the live-storage
   tracker; median step time of round-robin steps; gradients checked bitwise against plain
   autograd).
2. Solve times on a Hugging Face GPT-2 built from a config with 12 layers: capture, hierarchical
   with greedy options and with ilp options (5 s per option), identical blocks solved once.

    python benchmarks/oplevel.py [--layers 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

import checkpoint_solver as cs
from benchmarks._common import table, write_section
from checkpoint_solver import format_bytes, models
from checkpoint_solver.profiling.region import capture_region
from checkpoint_solver.runtime.measure import measure_step


def _loss(loss: torch.Tensor) -> torch.Tensor:
    return loss


def _step(model: nn.Module, inputs) -> float:  # type: ignore[no-untyped-def]
    for p in model.parameters():
        p.grad = None
    t0 = time.perf_counter()
    model(*inputs).backward()
    return time.perf_counter() - t0


def gpt_section(layers: int, repeats: int) -> str:
    model, inputs = models.gpt(layers=layers, dim=256, heads=4, context=128, vocab=2048, batch=8)
    t0 = time.perf_counter()
    region = capture_region(model, inputs, blocks=list(model.blocks), repeats=3)
    capture_s = time.perf_counter() - t0
    g = region.graph
    high = cs.solve(g, 10**15, solver="store_all").predicted.peak_bytes
    low_block = cs.min_budget(g, solver="hierarchical", block_level=True)
    low_hier = cs.min_budget(g, solver="hierarchical")
    budgets = [low_block + (high - low_block) * k // 5 for k in range(5)]
    plain = copy.deepcopy(model)
    rows = []
    runs = []
    for b in budgets:
        for label, block in (("block-level dp", True), ("hierarchical", False)):
            t0 = time.perf_counter()
            sched = cs.solve(g, b, solver="hierarchical", block_level=block)
            solve_s = time.perf_counter() - t0
            m = cs.apply(copy.deepcopy(model), sched)
            m(*inputs).backward()  # capture
            runs.append((b, label, sched, m, solve_s))
    # Measure: peaks and bitwise gradients, then round-robin timing.
    times: dict[int, list[float]] = {i: [] for i in range(len(runs) + 1)}
    models_ = [plain] + [r[3] for r in runs]
    for _ in range(repeats + 1):
        for i, m in enumerate(models_):
            times[i].append(_step(m, inputs))
    for p in plain.parameters():
        p.grad = None
    torch.manual_seed(0)
    ref = measure_step(plain, inputs, _loss)
    ref_grads = [p.grad.clone() for p in plain.parameters()]
    base = statistics.median(times[0][1:])
    for i, (b, label, sched, m, solve_s) in enumerate(runs, start=1):
        for p in m.parameters():
            p.grad = None
        torch.manual_seed(0)
        got = measure_step(m, inputs, _loss)
        exact = torch.equal(got.loss, ref.loss) and all(
            torch.equal(p.grad, q) for p, q in zip(m.parameters(), ref_grads, strict=True)
        )
        pred = sched.predicted.peak_bytes + region.input_bytes
        med = statistics.median(times[i][1:])
        rows.append(
            [
                format_bytes(b),
                label,
                f"{sched.predicted.overhead * 100:+.1f} %",
                format_bytes(pred),
                format_bytes(got.peak_bytes),
                f"{got.peak_bytes / pred:.4f}",
                f"{med * 1e3:.0f} ms",
                f"{(med / base - 1) * 100:+.1f} %",
                f"{solve_s:.2f} s",
                "yes" if exact else "NO",
            ]
        )
        print(rows[-1], flush=True)
    head = (
        f"GPT-style model from `models.gpt` ({layers} layers, dim 256, 4 heads, context 128, "
        f"vocab 2048, batch 8, dropout 0.1), the whole model captured as one region "
        f"({g.size} nodes: {len(g.ops)} op groups of the traced ATen graph) in {capture_s:.1f} s. "
        f"Plain autograd: measured peak {format_bytes(ref.peak_bytes)}, median step "
        f"{base * 1e3:.0f} ms. Minimum budgets: block-level dp {format_bytes(low_block)}, "
        f"hierarchical {format_bytes(low_hier)}; store-all {format_bytes(high)}. Budgets from "
        f"block-level's minimum to store-all; predicted = simulated on the same graph and node "
        f"costs; measured = live-storage tracker (inputs included), median of {repeats} "
        f"round-robin steps.\n\n"
    )
    return head + table(
        [
            "budget",
            "solver",
            "predicted overhead",
            "predicted peak",
            "measured peak",
            "measured/predicted",
            "step",
            "vs plain",
            "solve",
            "bitwise",
        ],
        rows,
    )


class _Loss(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, labels=labels).loss


def gpt2_section() -> str:
    model, batch = models.hf_gpt2(layers=12, dim=256, heads=4, context=128, vocab=8192, batch=8)
    wrapped = _Loss(model)
    t0 = time.perf_counter()
    region = capture_region(
        wrapped, (batch["input_ids"], batch["labels"]), blocks=list(model.transformer.h), repeats=1
    )
    capture_s = time.perf_counter() - t0
    g = region.graph
    high = cs.solve(g, 10**15, solver="store_all").predicted.peak_bytes
    rows = []
    for option_solver, opts in (("greedy", {}), ("ilp", {"time_limit": 5.0})):
        b = high // 2
        t0 = time.perf_counter()
        s = cs.solve(g, b, solver="hierarchical", option_solver=option_solver, **opts)
        solve_s = time.perf_counter() - t0
        block = cs.solve(g, b, solver="hierarchical", block_level=True)
        rows.append(
            [
                option_solver,
                format_bytes(b),
                f"{solve_s:.1f} s",
                f"{s.predicted.overhead * 100:+.1f} %",
                f"{block.predicted.overhead * 100:+.1f} %",
                s.notes.split("; DP")[0],
            ]
        )
        print(rows[-1], flush=True)
    head = (
        f"Hugging Face GPT-2 from a config (12 layers, n_embd 256, 4 heads, context 128, vocab "
        f"8192, batch 8): captured in {capture_s:.1f} s as {g.size} nodes ({len(g.ops)} op "
        f"groups). Budget: half the store-all peak ({format_bytes(high)}).\n\n"
    )
    return head + table(
        ["options from", "budget", "solve", "hierarchical", "block-level dp", "notes"], rows
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    body = gpt_section(args.layers, args.repeats) + "\n\n" + gpt2_section()
    print(body)
    if not args.no_write:
        write_section("oplevel", body)


if __name__ == "__main__":
    main()
