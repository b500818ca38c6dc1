"""The GPU check a lent machine runs first (`bash benchmarks/gpu_check.sh`, under 8 minutes):
predicted vs measured activation peak and step time on two zoo models, on the device.

For each model: profile on the device (no ``blocks=``), `dp` at torch per-block's predicted peak,
apply, and train 3 steps next to plain autograd and torch per-block; report the predicted peak,
the live-storage tracker's measured peak, ``torch.cuda.max_memory_allocated`` above the step's
start, the median step times, and whether loss and gradients equal plain autograd's; then the
whole step with AdamW (profiled with the optimizer, `dp` at the budget plus the model states):
predicted, the tracker's count of every live tensor, ``max_memory_allocated`` and
``max_memory_reserved``. Then offload (issue 21), on the same models with the link measured by
``cs.measure_link``: torch per-block, the Unsloth-style plan, ``dp`` and ``dp-offload`` at
per-block's peak, each measured (step time, tracker and ``max_memory_allocated`` peaks, host
peak) and checked against plain autograd. Writes the RESULTS.md section "gpu_check" with the
device name.

    python benchmarks/gpu_check.py [--device cuda] [--only llama unet]
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
from checkpoint_solver.profiling.chain import inputs_to
from checkpoint_solver.runtime import baselines
from checkpoint_solver.runtime.measure import measure_step, time_steps
from checkpoint_solver.schedule import HostLink
from checkpoint_solver.solvers.baseline_plans import (
    offload_per_block,
    profile_blocks,
    torch_per_block,
)


def _profiled(name: str, device: str) -> tuple[torch.nn.Module, object, cs.Profile]:
    torch.manual_seed(0)
    model, inputs = zoo.build(name, 1)
    model, inputs = model.to(device), inputs_to(inputs, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = cs.profile(model, inputs, graph=False)
    return model, inputs, prof


def run(name: str, device: str) -> list[object]:
    model, inputs, prof = _profiled(name, device)
    first, count = profile_blocks([s.name for s in prof.stages])
    budget = torch_per_block(prof.chain, first, count).predicted.peak_bytes
    sched = cs.solve(prof.chain, budget, "dp")
    names = list(dict.fromkeys(m for s in prof.stages for m in s.modules))
    plain = copy.deepcopy(model)
    ours = cs.apply(copy.deepcopy(model), sched, prof)
    torch.manual_seed(1)
    ref = measure_step(plain, inputs)
    torch.manual_seed(1)
    got = measure_step(ours, inputs)
    exact = torch.equal(ref.loss, got.loss) and all(
        torch.equal(a.grad, b.grad)
        for a, b in zip(plain.parameters(), ours.parameters(), strict=True)
        if a.grad is not None
    )
    # The whole step with AdamW: profiled with the optimizer, solved at the same budget plus the
    # model states, measured with every live tensor (and max_memory_allocated / _reserved).
    opt = torch.optim.AdamW(model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = cs.profile(model, inputs, graph=False, optimizer=opt)
    st = whole.chain.states
    assert st is not None
    step_sched = cs.solve(
        whole.chain, budget + st.params + st.optimizer + st.grad_bytes + st.step, "dp"
    )
    stepped = cs.apply(copy.deepcopy(model), step_sched, whole)
    step_opt = torch.optim.AdamW(stepped.parameters())
    measure_step(stepped, inputs, optimizer=step_opt)
    step = measure_step(stepped, inputs, optimizer=step_opt)
    del stepped, step_opt
    per_block = baselines.checkpoint_per_block(copy.deepcopy(model), names)
    times = {
        k: time_steps(m, inputs, repeats=3)
        for k, m in (("plain", plain), ("per-block", per_block), ("dp", ours))
    }
    mib = 2**20
    return [
        f"{name} (1)",
        prof.chain.length,
        f"{budget / mib:.1f}",
        f"{sched.predicted.peak_bytes / mib:.1f}",
        f"{got.peak_bytes / mib:.1f}",
        "—" if got.cuda_peak_bytes is None else f"{got.cuda_peak_bytes / mib:.1f}",
        f"{step_sched.predicted.peak_bytes / mib:.1f} / {(step.step_peak_bytes or 0) / mib:.1f}"
        + (
            ""
            if step.cuda_step_peak_bytes is None
            else f" / {step.cuda_step_peak_bytes / mib:.1f} / "
            f"{(step.cuda_reserved_bytes or 0) / mib:.1f}"
        ),
        f"+{100 * sched.predicted.overhead:.1f}%",
        " / ".join(
            f"{1e3 * statistics.median(times[k]):.1f}" for k in ("plain", "per-block", "dp")
        ),
        "yes" if exact else "NO",
    ]


def offload_rows(name: str, device: str) -> list[list[object]]:
    model, inputs, prof = _profiled(name, device)
    link = cs.measure_link(device) if device.startswith("cuda") else HostLink.gbps(25)
    first, count = profile_blocks([s.name for s in prof.stages])
    peak = torch_per_block(prof.chain, first, count).predicted.peak_bytes
    names = list(dict.fromkeys(m for s in prof.stages for m in s.modules))
    plain = copy.deepcopy(model)
    torch.manual_seed(1)
    ref = measure_step(plain, inputs)
    schedules = {
        "unsloth-style": offload_per_block(prof.chain, link, first, count),
        "dp": cs.solve(prof.chain, peak, "dp"),
        "dp-offload": cs.solve(prof.chain, peak, "dp-offload", link=link),
    }
    runs: dict[str, tuple[torch.nn.Module, cs.Schedule | None]] = {
        "per-block": (baselines.checkpoint_per_block(copy.deepcopy(model), names), None)
    }
    for k, sched in schedules.items():
        runs[k] = (cs.apply(copy.deepcopy(model), sched, prof), sched)
    base = statistics.median(time_steps(runs["per-block"][0], inputs, repeats=3))
    mib = 2**20
    rows: list[list[object]] = []
    for k, (m, sched) in runs.items():
        torch.manual_seed(1)
        got = measure_step(m, inputs)
        exact = all(
            torch.equal(a.grad, b.grad)
            for a, b in zip(plain.parameters(), m.parameters(), strict=True)
            if a.grad is not None
        ) and torch.equal(ref.loss, got.loss)
        ms = statistics.median(time_steps(m, inputs, repeats=3))
        p = None if sched is None else sched.predicted
        rows.append(
            [
                f"{name} (1)",
                f"{link.d2h_bytes_per_s / 1e9:.1f} / {link.h2d_bytes_per_s / 1e9:.1f}",
                k,
                "—" if p is None else f"{p.peak_bytes / mib:.1f}",
                f"{got.peak_bytes / mib:.1f}",
                "—" if got.cuda_peak_bytes is None else f"{got.cuda_peak_bytes / mib:.1f}",
                "—" if p is None else f"{(p.host_peak_bytes or 0) / mib:.1f}",
                f"{got.host_peak_bytes / mib:.1f}",
                "—" if sched is None else sum("offload" in str(op) for op in sched.ops),
                f"{1e3 * ms:.1f}",
                f"{ms / base:.3f}",
                "yes" if exact else "NO",
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", nargs="*", default=["llama", "unet"])
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = [run(n, args.device) for n in args.only]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    headers = [
        "model (config)",
        "stages",
        "budget MiB (per-block peak)",
        "predicted MiB",
        "measured MiB (tracker)",
        "measured MiB (cuda)",
        "whole step MiB: predicted / tracker / cuda allocated / cuda reserved",
        "dp overhead",
        "step ms plain / per-block / dp",
        "bitwise",
    ]
    offload = [r for n in args.only for r in offload_rows(n, args.device)]
    offload_headers = [
        "model (config)",
        "link GB/s d2h / h2d",
        "schedule",
        "predicted MiB",
        "measured MiB (tracker)",
        "measured MiB (cuda)",
        "predicted host MiB",
        "measured host MiB",
        "offloads",
        "step ms",
        "/ per-block",
        "bitwise",
    ]
    body = (
        f"Device: {device}, torch {torch.__version__}; {time.perf_counter() - t0:.0f} s.\n\n"
        + table(headers, rows)
        + "\n\nOffload at torch per-block's peak:\n\n"
        + table(offload_headers, offload)
    )
    print(body)
    write_section("gpu_check", body)


if __name__ == "__main__":
    main()
