"""Offload next to recomputation: dp-offload against dp, torch per-block and the Unsloth-style
plan, predicted on every zoo family at two link speeds, and measured through the executor.

For each family (profiled here, CPU times) and link:

- at torch per-block's own peak: per-block's time, dp's, dp-offload's (compute plus waits for
  copies), and dp-offload / per-block;
- the Unsloth-style plan (every block input offloaded, every block recomputed): its peak and time,
  and dp-offload's time at that peak;
- the trade-off curve over 8 budgets from dp-offload's minimum to store-all: at how many dp-offload
  is strictly faster than dp, its largest gain, and whether it is ever slower (it must not be).

Links: ``25 GB/s`` (PCIe 4 x16 class; against CPU compute times copies are nearly free) and
``matched``: the bandwidth at which the median boundary copies in the median stage's forward time
(the regime of a fast GPU on PCIe, where waits appear). A second table runs dp-offload at
per-block's peak through the executor (its CPU host pool) on three families: measured device and
host peaks against the prediction, and whether gradients are bitwise plain autograd's. A third
does the same at op level: ``hierarchical`` with and without the link on the op graph at three
budgets (predicted step times), and the link's plan at the lowest replayed by the op-level
executor. A fourth is the torchtune-style plan at op level (`offload_saved`: nothing recomputed,
every saved activation to host memory) against store-all, predicted and replayed.

    python benchmarks/offload.py            # writes RESULTS.md "offload"
"""

from __future__ import annotations

import copy
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import checkpoint_solver as cs
from benchmarks._common import table, write_section, zoo_arguments
from checkpoint_solver import zoo
from checkpoint_solver.runtime.measure import measure_step
from checkpoint_solver.schedule import HostLink, Offload, OffloadValue
from checkpoint_solver.solvers.baseline_plans import (
    offload_per_block,
    offload_saved,
    profile_blocks,
    torch_per_block,
)

MEASURED = ("resnet", "unet", "rnn_steps")


def _step(s: cs.Schedule) -> float:
    return s.predicted.compute_time + s.predicted.stall_time


def _links(chain: cs.Chain) -> list[tuple[str, HostLink]]:
    bw = statistics.median(chain.x[1:]) / statistics.median(chain.uf)
    return [
        ("25 GB/s", HostLink.gbps(25)),
        (f"matched ({bw / 1e9:.2g} GB/s)", HostLink(d2h_bytes_per_s=bw, h2d_bytes_per_s=bw)),
    ]


def _curve(chain: cs.Chain, link: HostLink) -> tuple[int, float, bool]:
    low = cs.min_budget(chain, "dp-offload", link=link)
    high = max(low, cs.min_budget(chain, "store_all"))
    faster, gain, slower = 0, 0.0, False
    for k in range(8):
        b = low + (high - low) * k // 7
        off = _step(cs.solve(chain, b, "dp-offload", link=link))
        try:
            plain = cs.solve(chain, b, "dp").predicted.compute_time
        except cs.InfeasibleBudgetError:
            faster += 1
            continue
        if off < plain * (1 - 1e-9):
            faster += 1
            gain = max(gain, 1 - off / plain)
        slower |= off > plain * (1 + 1e-9)
    return faster, gain, slower


def run(name: str, size: int) -> tuple[list[list[object]], cs.Profile, object]:
    model, inputs = zoo.build(name, size)
    prof = cs.profile(model, inputs, warmup=1, repeats=3, graph=name in MEASURED)
    chain = prof.chain
    first, count = profile_blocks([s.name for s in prof.stages])
    per_block = torch_per_block(chain, first, count)
    peak = per_block.predicted.peak_bytes
    rows: list[list[object]] = []
    for label, link in _links(chain):
        dp = cs.solve(chain, peak, "dp")
        off = cs.solve(chain, peak, "dp-offload", link=link)
        unsloth = offload_per_block(chain, link, first, count)
        at_unsloth = cs.solve(chain, unsloth.predicted.peak_bytes, "dp-offload", link=link)
        faster, gain, slower = _curve(chain, link)
        rows.append(
            [
                name,
                label,
                cs.format_bytes(peak),
                f"{per_block.predicted.compute_time * 1e3:.2f}",
                f"{dp.predicted.compute_time * 1e3:.2f}",
                f"{_step(off) * 1e3:.2f}",
                f"{_step(off) / per_block.predicted.compute_time:.3f}",
                sum(isinstance(op, Offload) for op in off.ops),
                cs.format_bytes(unsloth.predicted.peak_bytes),
                f"{_step(unsloth) * 1e3:.2f}",
                f"{_step(at_unsloth) * 1e3:.2f}",
                f"{faster}/8",
                f"{gain:.1%}",
                "yes" if slower else "no",
            ]
        )
    return rows, prof, (model, inputs, peak)


def measured(name: str, prof: cs.Profile, model, inputs, peak: int) -> list[object]:
    from tests.zoo.check import differences, reference, train

    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    sched = cs.solve(prof.chain, peak, "dp-offload", link=link)
    m = copy.deepcopy(model)
    cs.apply(m, sched, prof)
    got = train(m, inputs)
    host = measure_step(m, inputs).host_peak_bytes
    p = sched.predicted
    return [
        name,
        sum(isinstance(op, Offload) for op in sched.ops),
        cs.format_bytes(p.peak_bytes),
        f"{got.peak_bytes / p.peak_bytes:.4f}",
        cs.format_bytes(p.host_peak_bytes or 0),
        cs.format_bytes(host),
        "yes" if not differences(reference(model, inputs), got) else "no",
    ]


def op_level(name: str, prof: cs.Profile, model, inputs) -> list[list[object]]:
    from tests.zoo.check import differences, reference, train

    graph = prof.graph
    assert graph is not None
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    low, high = cs.min_budget(graph, "hierarchical"), cs.min_budget(graph, "store_all")
    rows: list[list[object]] = []
    for k, f in enumerate((0.1, 0.3, 0.6)):
        budget = int(low + (high - low) * f)
        plain = cs.solve(graph, budget, "hierarchical")
        off = cs.solve(graph, budget, "hierarchical", link=link)
        row: list[object] = [
            name,
            cs.format_bytes(budget),
            f"{plain.predicted.compute_time * 1e3:.2f}",
            f"{_step(off) * 1e3:.2f}",
            f"{_step(off) / plain.predicted.compute_time:.3f}",
            sum(isinstance(op, OffloadValue) for op in off.ops),
        ]
        if k == 0:
            m = copy.deepcopy(model)
            cs.apply(m, off, prof)
            got = train(m, inputs)
            host = measure_step(m, inputs).host_peak_bytes
            predicted = off.predicted.peak_bytes + prof.measurement["input_bytes"]
            row += [
                f"{got.peak_bytes / predicted:.4f}",
                f"{cs.format_bytes(off.predicted.host_peak_bytes or 0)} / {cs.format_bytes(host)}",
                "yes" if not differences(reference(model, inputs), got) else "no",
            ]
        else:
            row += ["", "", ""]
        rows.append(row)
    return rows


def saved(name: str, prof: cs.Profile, model, inputs) -> list[object]:
    """The torchtune-style plan at op level against store-all, predicted and replayed."""
    from tests.zoo.check import differences, reference, train

    graph = prof.graph
    assert graph is not None
    link = HostLink(d2h_bytes_per_s=1e9, h2d_bytes_per_s=1e9)
    store = cs.solve(graph, cs.min_budget(graph, "store_all"), "store_all")
    tt = offload_saved(graph, link, min_offload_size=0)
    m = copy.deepcopy(model)
    cs.apply(m, tt, prof)
    got = train(m, inputs)
    host = measure_step(m, inputs).host_peak_bytes
    predicted = tt.predicted.peak_bytes + prof.measurement["input_bytes"]
    return [
        name,
        cs.format_bytes(store.predicted.peak_bytes),
        f"{store.predicted.compute_time * 1e3:.2f}",
        cs.format_bytes(tt.predicted.peak_bytes),
        f"{_step(tt) * 1e3:.2f}",
        sum(isinstance(op, OffloadValue) for op in tt.ops),
        f"{got.peak_bytes / predicted:.4f}",
        f"{cs.format_bytes(tt.predicted.host_peak_bytes or 0)} / {cs.format_bytes(host)}",
        "yes" if not differences(reference(model, inputs), got) else "no",
    ]


def main() -> None:
    size, families = zoo_arguments(__doc__)
    rows, checks, graphs, tapes = [], [], [], []
    for name in families:
        got, prof, (model, inputs, peak) = run(name, size)
        rows += got
        if name in MEASURED:
            checks.append(measured(name, prof, model, inputs, peak))
            if prof.graph is not None:
                graphs += op_level(name, prof, model, inputs)
                tapes.append(saved(name, prof, model, inputs))
    headers = [
        "model",
        "link",
        "per-block peak",
        "per-block ms",
        "dp ms",
        "dp-offload ms",
        "dp-offload / per-block",
        "offloads",
        "Unsloth-style peak",
        "Unsloth-style ms",
        "dp-offload ms at that peak",
        "curve: faster than dp",
        "curve: largest gain",
        "ever slower than dp",
    ]
    measured_headers = [
        "model",
        "offloads",
        "predicted device peak",
        "measured / predicted",
        "predicted host peak",
        "measured host peak",
        "bitwise",
    ]
    graph_headers = [
        "model",
        "budget",
        "hierarchical ms",
        "with link ms",
        "with link / without",
        "values offloaded",
        "measured / predicted",
        "host predicted / measured",
        "bitwise",
    ]
    saved_headers = [
        "model",
        "store-all peak",
        "store-all ms",
        "torchtune-style peak",
        "torchtune-style ms",
        "values offloaded",
        "measured / predicted",
        "host predicted / measured",
        "bitwise",
    ]
    body = (
        f"Config {size}; times are the profile's (CPU) plus the simulator's waits for copies. "
        f"All predicted except the executor columns.\n\n"
        + table(headers, rows)
        + "\n\nThrough the executor at per-block's peak (CPU host pool), two steps against plain "
        "autograd:\n\n"
        + table(measured_headers, checks)
        + "\n\nAt op level (link 1 GB/s each way): `hierarchical` without and with the link at "
        "three budgets between its minimum and store-all (predicted ms), the first replayed by "
        "the op-level executor:\n\n"
        + table(graph_headers, graphs)
        + "\n\nThe torchtune-style plan at op level (`offload_saved`: nothing recomputed, every "
        "saved activation offloaded as it is made and brought back one op before its first "
        "backward reader; link 1 GB/s) against store-all, replayed by the op-level "
        "executor:\n\n" + table(saved_headers, tapes)
    )
    print(body)
    write_section("offload", body)


if __name__ == "__main__":
    main()
