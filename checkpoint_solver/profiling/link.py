"""`measure_link`: the device-host link's bandwidth each way, measured with pinned buffers on
CUDA, as the offload solver (``dp-offload``) and the simulator time copies."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from checkpoint_solver.errors import InvalidArgumentError
from checkpoint_solver.schedule import HostLink
from checkpoint_solver.units import parse_bytes

__all__ = ["measure_link"]


def measure_link(
    device: Any = "cuda",
    *,
    nbytes: int | str = "64MiB",
    repeats: int = 5,
    host_budget: int | str | None = None,
) -> HostLink:
    """Time copies of `nbytes` between pinned host memory and `device`, each way, on a side
    stream (as the executor copies), and return the median bandwidths as a `HostLink`.

    Raises
    ------
    InvalidArgumentError
        When `device` is not a CUDA device (on CPU there is no link to measure: give
        ``cs.HostLink.gbps(...)`` for the device you will train on).
    """
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        raise InvalidArgumentError(
            f"measure_link needs a CUDA device, got {device!r}; on a machine without one, give "
            f"the link of the device you will train on: cs.HostLink.gbps(25) (PCIe 4 x16 class)"
        )
    size = parse_bytes(nbytes)
    host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    gpu = torch.empty(size, dtype=torch.uint8, device=dev)
    stream = torch.cuda.Stream(device=dev)
    rates: dict[str, list[float]] = {"d2h": [], "h2d": []}
    for k in range(repeats + 1):
        for direction, (dst, src) in (("d2h", (host, gpu)), ("h2d", (gpu, host))):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            with torch.cuda.stream(stream):
                start.record(stream)
                dst.copy_(src, non_blocking=True)
                end.record(stream)
            end.synchronize()
            if k:  # the first round warms up
                rates[direction].append(size / (start.elapsed_time(end) / 1e3))
    return HostLink(
        d2h_bytes_per_s=statistics.median(rates["d2h"]),
        h2d_bytes_per_s=statistics.median(rates["h2d"]),
        host_budget_bytes=None if host_budget is None else parse_bytes(host_budget),
    )
