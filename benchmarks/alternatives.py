"""Our schedules against every alternative a user has today, at equal measured peak, in one run.

The built-in GPT-style model (the demo's, 8 layers) trains side by side under: plain autograd;
``torch.utils.checkpoint`` per block (``use_reentrant=False``); ``checkpoint_sequential`` at 2, 3
and 4 segments; ``torch.compile`` (``backend="aot_eager"``, the partitioner inductor uses, runnable
on a CPU without a compiler) at several ``torch._functorch.config.activation_memory_budget``
values; and our ``dp`` (per block) and ``hierarchical`` (op level) schedules solved at each
alternative's measured peak. Every row: predicted (ours) and measured activation peak (the
live-storage tracker, which also sees the compiled graphs' ops), median step time (forward,
backward, SGD step; round-robin), and losses/gradients checked bitwise against plain autograd.

    python benchmarks/alternatives.py [--layers 8] [--steps 5]

``--compiled`` (or ``benchmarks/alternatives_compiled.py``) runs the second comparison instead
(section ``alternatives_compiled``): under
``torch.compile`` itself, `activation_memory_budget` at each ratio against our schedule
exported as torch's own checkpoint policies (`cs.export_policy`, ``hierarchical`` solved at that
ratio's measured peak) and compiled with the default partitioner: measured peak, step time, and
the gradients against compile without checkpointing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch._dynamo
import torch._functorch.config as functorch_config
from torch import nn
from torch._dynamo.backends.registry import lookup_backend

from benchmarks._common import table, write_section
from checkpoint_solver import format_bytes, models
from checkpoint_solver.compare import compare

COMPILE_BUDGETS = (1.0, 0.7, 0.5, 0.3, 0.1, 0.0)


class Compiled(nn.Module):
    """``torch.compile(model, backend="aot_eager")`` under an activation memory budget.

    Each budget gets its own backend object: Dynamo's cache is per code object and, with
    inlined nn.Modules, a deep copy of the model reuses another copy's compiled graph unless
    the backend differs (a backend mismatch forces a recompile). The budget is read when the
    joint graph is partitioned, inside the backend call."""

    def __init__(self, model: nn.Module, budget: float) -> None:
        super().__init__()
        aot_eager = lookup_backend("aot_eager")

        def backend(gm, example_inputs):  # type: ignore[no-untyped-def]
            with functorch_config.patch(activation_memory_budget=budget):
                return aot_eager(gm, example_inputs)

        self.compiled = torch.compile(model, backend=backend)
        self.budget = budget

    def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with functorch_config.patch(activation_memory_budget=self.budget):
            return self.compiled(*args, **kwargs)


def _compiled_step(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], steps: int
) -> tuple[int, float, list[torch.Tensor]]:
    """A compiled model's measured activation peak (second step: compiled by the first), median
    step time (forward, backward) and gradients of one seeded step."""
    from checkpoint_solver.runtime.measure import measure_step, time_steps

    for _ in range(2):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(11)
        peak = measure_step(model, inputs).peak_bytes
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    times = sorted(time_steps(model, inputs, warmup=1, repeats=steps))
    return peak, times[len(times) // 2], grads


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> str:
    if all(torch.equal(x, y) for x, y in zip(a, b, strict=True)):
        return "bitwise equal"
    err = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
    return f"differ (max abs {err:.1e})"


def compiled_comparison(layers: int, steps: int) -> None:
    """Our exported policy under torch.compile against activation_memory_budget, at each
    budget's measured peak (see the module docstring)."""
    # Long: one table's rows, each budget's pair measured in turn on fresh copies of one model.
    import copy

    import checkpoint_solver as cs

    torch._dynamo.config.recompile_limit = 64
    model, inputs = models.gpt(layers=layers, dim=256, heads=4)
    prof = cs.profile(copy.deepcopy(model), inputs)
    graph = prof.graph
    assert graph is not None
    x0 = int(prof.measurement["input_bytes"])
    torch._dynamo.reset()
    reference = Compiled(copy.deepcopy(model), 1.0)
    peak0, time0, ref = _compiled_step(reference, inputs, steps)
    rows = [["torch.compile, no checkpointing", "-", format_bytes(peak0), time0, "reference"]]
    wins = []
    for b in COMPILE_BUDGETS[1:]:
        torch._dynamo.reset()
        peak, t, grads = _compiled_step(Compiled(copy.deepcopy(model), b), inputs, steps)
        rows.append([f"torch.compile budget {b}", "-", format_bytes(peak), t, _same(grads, ref)])
        ours = copy.deepcopy(model)
        policy = None
        low = cs.min_budget(graph, "hierarchical")
        # The largest schedule whose compiled prediction fits that peak, on a descending grid
        # (the two-level schedule's peak is not monotone in the budget solved for).
        for i in range(12):
            target = peak - x0 - (peak - x0 - low) * i // 11
            if target < low:
                break
            candidate = cs.export_policy(
                ours, cs.solve(graph, target, "hierarchical"), prof, inputs
            )
            if candidate.peak_bytes_compiled <= peak:
                policy = candidate
                break
        if policy is None:
            rows.append([f"= {b}: ours (exported, compiled)", "-", "infeasible", None, "-"])
            continue
        policy.apply(ours)
        torch._dynamo.reset()
        compiled = torch.compile(ours, backend="aot_eager")
        p2, t2, g2 = _compiled_step(compiled, inputs, steps)
        rows.append(
            [
                f"= {b}: ours (exported, compiled)",
                format_bytes(policy.peak_bytes_compiled),
                format_bytes(p2),
                t2,
                _same(g2, ref),
            ]
        )
        wins.append(
            f"- budget {b} ({format_bytes(peak)}): ours {format_bytes(p2)}, "
            f"{t2 / t - 1:+.1%} step time against it"
        )
    # The reference timed again last (one method after another on a shared machine): the faster.
    torch._dynamo.reset()
    time0 = min(time0, _compiled_step(reference, inputs, steps)[1])
    rows = [
        [
            m,
            pred,
            meas,
            "-" if t is None else f"{t * 1e3:.0f} ms",
            "-" if t is None else f"{t / time0 - 1:+.1%}",
            note,
        ]
        for m, pred, meas, t, note in rows
    ]
    text = table(
        [
            "method",
            "predicted peak",
            "measured peak",
            "step",
            "vs compile plain",
            "gradients vs compile plain",
        ],
        rows,
    )
    print(text)
    body = "\n".join(
        [
            f"GPT-style model ({layers} layers, dim 256), batch 8 x 128 tokens, dropout 0.1. "
            f"Every row runs under "
            f'`torch.compile(backend="aot_eager")`; activation peaks measured by the live-storage '
            f"tracker on the second (compiled) step, step time the median of {steps} steps "
            f"(forward, backward), measured one method after another. Ours: `hierarchical` solved "
            f"at the budget row's measured peak (lowered until `predicted_compiled` fits it), "
            f"exported with `cs.export_policy`, compiled with the default partitioner; its "
            f"predicted peak is `TorchPolicy.peak_bytes_compiled`.",
            "",
            text,
            "",
            "At equal memory:",
            "",
            *wins,
        ]
    )
    write_section("alternatives_compiled", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--compiled", action="store_true", help="the torch.compile comparison")
    args = parser.parse_args()
    if args.compiled:
        compiled_comparison(args.layers, args.steps)
        return
    # One compiled graph per budget (a new module each): stay under Dynamo's recompile limit.
    torch._dynamo.config.recompile_limit = 64
    model, inputs = models.gpt(layers=args.layers, dim=256, heads=4)
    alternatives = {
        f"torch.compile budget {b}": (lambda m, b=b: Compiled(m, b)) for b in COMPILE_BUDGETS
    }
    seq = [f"torch checkpoint_sequential ({k} segments)" for k in (2, 4)]
    from checkpoint_solver.runtime import baselines

    for k in (2, 4):
        alternatives[seq[(k // 2) - 1]] = lambda m, k=k: baselines.checkpoint_sequential(m, k)
    result = compare(
        model,
        inputs,
        fractions=(),
        solvers=("dp", "hierarchical"),
        steps=args.steps,
        alternatives=alternatives,
        match=[
            *seq,
            "torch checkpoint_sequential (3 segments)",
            *(a for a in alternatives if a not in seq),
        ],
        description=f"GPT-style model ({args.layers} layers, dim 256)",
        progress=lambda m: print(m, flush=True),
    )
    print(result.table())
    rows = []
    for r in result.rows:
        rows.append(
            [
                r.method,
                r.budget
                if r.budget_bytes is None
                else f"{r.budget} ({format_bytes(r.budget_bytes)})",
                format_bytes(r.predicted_peak_bytes) if r.predicted_peak_bytes else "-",
                format_bytes(r.measured_peak_bytes) if r.measured_peak_bytes else "-",
                f"{r.step_seconds * 1e3:.0f} ms" if r.step_seconds else "-",
                f"{r.vs_plain:+.1%}" if r.vs_plain is not None else "-",
                f"{r.predicted_overhead:+.1%}" if r.predicted_overhead is not None else "-",
                r.error or ("bitwise equal" if r.exact else "DIFFER"),
            ]
        )
    # Equal-memory verdicts: for each alternative, the faster of ours at its peak.
    verdicts = []
    plain = result.row("no checkpointing")
    for alt in [r for r in result.rows if r.budget == "-" and r is not plain]:
        ours = [r for r in result.rows if r.budget == f"= {alt.method}" and r.error is None]
        if not ours or alt.step_seconds is None:
            continue
        best = min(ours, key=lambda r: r.step_seconds or float("inf"))
        assert best.step_seconds is not None and best.measured_peak_bytes is not None
        assert alt.measured_peak_bytes is not None
        verdicts.append(
            f"- {alt.method} ({format_bytes(alt.measured_peak_bytes)}, {alt.vs_plain:+.1%}): "
            f"{best.method} at its peak measures {format_bytes(best.measured_peak_bytes)}, "
            f"{best.step_seconds / alt.step_seconds - 1:+.1%} step time vs it "
            f"({best.vs_plain:+.1%} vs plain)"
        )
    body = "\n".join(
        [
            f"{result.model}, batch 8 x 128 tokens, dropout 0.1, device `{result.device}` "
            f"({result.device_name}). Activation peaks as the profiler counts them (inputs, "
            f"activations, saved tensors, activation gradients, temporaries; parameters and "
            f"their gradients come on top), measured with the live-storage tracker on one step "
            f"(it sees torch.compile's aot_eager graphs too). Step: median of {result.steps} "
            f"round-robin steps (forward, backward, SGD update). torch.compile rows use "
            f'`backend="aot_eager"` and `torch._functorch.config.activation_memory_budget` '
            f"(a ratio, not bytes); `= X` rows are ours solved at X's peak (its measured peak, "
            f"or our simulation of it when larger).",
            "",
            table(
                [
                    "method",
                    "budget",
                    "predicted peak",
                    "measured peak",
                    "step",
                    "vs no checkpointing",
                    "predicted overhead",
                    "gradients / note",
                ],
                rows,
            ),
            "",
            "At equal memory (ours solved at each alternative's measured peak):",
            "",
            *verdicts,
            "",
            *[f"- {line}" for line in result.summary()],
            "- torch.compile below budget 1.0 gives gradients that are not those of plain "
            "autograd on this model (the DIFFER rows): checked separately on the 4-layer model, "
            "budget 0.5 with dropout 0.1 changes parameter gradients by up to 5.5e-3 (absolute) "
            "while the loss is identical, and with dropout 0 the gradients are bitwise equal: "
            "consistent with the partitioned backward recomputing dropout with fresh random "
            "numbers (not investigated further). Ours replay RNG "
            "state and match bitwise on every row.",
            "- Step times on this shared 2-core VM vary by 10-25 % between steps and runs; "
            "differences below that are noise. aot_eager runs the partitioned graphs op by op "
            "in Python (no fusion), so its step times show the partitioner's choice, not "
            "inductor's speed.",
        ]
    )
    write_section("alternatives", body)


if __name__ == "__main__":
    main()
