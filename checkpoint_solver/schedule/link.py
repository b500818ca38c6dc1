"""`HostLink`: the host memory an offload schedule copies to, and the link it copies over.

A schedule with `Offload`/`Prefetch` ops is solved for one link: its bandwidth each way (one copy
stream per direction, copies on a stream run one after the other), and how much host memory it
may hold at once (pinned pages are limited). The simulator times copies next to compute with it;
the schedule carries it, so that the file says what its step time assumed.

Examples
--------
>>> link = HostLink.gbps(25, host_budget="8GiB")
>>> link.d2h_bytes_per_s, link.host_budget_bytes
(25000000000.0, 8589934592)
>>> link.seconds(10**9, "d2h")
0.04
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from checkpoint_solver.errors import FileFormatError, InvalidArgumentError

__all__ = ["HostLink"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HostLink:
    """A device-host link and the host memory behind it.

    Attributes
    ----------
    d2h_bytes_per_s, h2d_bytes_per_s : float
        Copy bandwidth device to host (offload) and host to device (prefetch), in bytes per
        second of the problem's time unit (seconds for profiled problems).
    host_budget_bytes : int | None
        The most host memory the schedule's copies may hold at once; None: unbounded.
    """

    d2h_bytes_per_s: float
    h2d_bytes_per_s: float
    host_budget_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("d2h_bytes_per_s", "h2d_bytes_per_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidArgumentError(f"HostLink {name} must be a finite number, got {v!r}")
            if v <= 0:
                raise InvalidArgumentError(
                    f"HostLink {name} must be positive (bytes per second), got {v!r}; PCIe 4 x16 "
                    f"moves about 25e9"
                )
            object.__setattr__(self, name, float(v))
        h = self.host_budget_bytes
        if h is not None and (isinstance(h, bool) or not isinstance(h, int) or h < 0):
            raise InvalidArgumentError(
                f"HostLink host_budget_bytes must be a non-negative int or None, got {h!r}"
            )

    @classmethod
    def gbps(
        cls, d2h: float, h2d: float | None = None, *, host_budget: int | str | None = None
    ) -> HostLink:
        """A link of `d2h` (and `h2d`, the same by default) gigabytes per second; `host_budget`
        in bytes or as text (``"8GiB"``)."""
        from checkpoint_solver.units import parse_bytes

        budget = None if host_budget is None else parse_bytes(host_budget)
        return cls(
            d2h_bytes_per_s=d2h * 1e9,
            h2d_bytes_per_s=(d2h if h2d is None else h2d) * 1e9,
            host_budget_bytes=budget,
        )

    def seconds(self, nbytes: int, direction: Literal["d2h", "h2d"]) -> float:
        """Time to copy `nbytes` one way."""
        bw = self.d2h_bytes_per_s if direction == "d2h" else self.h2d_bytes_per_s
        return nbytes / bw

    def to_dict(self) -> dict[str, Any]:
        return {
            "d2h_bytes_per_s": self.d2h_bytes_per_s,
            "h2d_bytes_per_s": self.h2d_bytes_per_s,
            "host_budget_bytes": self.host_budget_bytes,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "link") -> HostLink:
        try:
            return cls(
                d2h_bytes_per_s=data["d2h_bytes_per_s"],
                h2d_bytes_per_s=data["h2d_bytes_per_s"],
                host_budget_bytes=data.get("host_budget_bytes"),
            )
        except (KeyError, TypeError, AttributeError, InvalidArgumentError) as exc:
            raise FileFormatError(
                f"{source}: a link is {{d2h_bytes_per_s, h2d_bytes_per_s, host_budget_bytes}} "
                f"({exc})"
            ) from None
