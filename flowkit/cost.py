"""What a run cost: CPU time and memory held over wall time, priced by rates you give.

``--cost-rate cpu_hour=0.05,gb_hour=0.01`` (or the environment variable ``FLOWKIT_COST_RATE``;
``cost_rates=`` in Python) prices each step's
successful attempt as::

    cpu_seconds / 3600 * cpu_hour  +  peak_memory_bytes / 1e9 * wall_seconds / 3600 * gb_hour

in whatever currency the rates are in. CPU time is measured for every step; peak memory only
where flowkit measures it (shell commands, ``isolate=True`` steps, and what steps wait for), so
the memory part of other steps is 0. Without rates, no cost is computed or shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .result import _fmt_cost

__all__ = ["RATE_NAMES", "CostRates", "fmt_cost"]

#: The rates one can give, with what they price.
RATE_NAMES = {"cpu_hour": "one CPU busy for an hour", "gb_hour": "1 GB of memory held an hour"}


@dataclass(frozen=True, slots=True)
class CostRates:
    """Prices per CPU-hour and per GB-hour (GB = 10**9 bytes)."""

    cpu_hour: float = 0.0
    gb_hour: float = 0.0

    def __post_init__(self) -> None:
        for name in RATE_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise UsageError(f"cost rate {name} must be a number >= 0, got {value!r}")

    @classmethod
    def parse(cls, text: str, source: str = "--cost-rate") -> CostRates:
        """``cpu_hour=0.05,gb_hour=0.01`` (either may be left out); ``source`` names where the
        text came from in messages (``--cost-rate``, ``FLOWKIT_COST_RATE``).

        Raises:
            UsageError: an unknown rate name, a value that is not a number >= 0, or nothing.
        """
        values: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in RATE_NAMES:
                raise UsageError(
                    f"{source} {text!r}: expected NAME=PRICE pairs with NAME one of "
                    f"{', '.join(RATE_NAMES)}, e.g. --cost-rate cpu_hour=0.05,gb_hour=0.01"
                )
            try:
                values[name] = float(value)
            except ValueError:
                raise UsageError(f"{source} {text!r}: {name}={value!r} is not a number") from None
        if not values:
            raise UsageError(f"{source} needs at least one rate, e.g. cpu_hour=0.05,gb_hour=0.01")
        return cls(**values)

    def of(self, cpu_s: float | None, peak_rss: int | None, wall_s: float | None) -> float:
        """The cost of one attempt from its figures (missing figures count as 0)."""
        cost = (cpu_s or 0.0) / 3600.0 * self.cpu_hour
        if peak_rss and wall_s:
            cost += peak_rss / 1e9 * wall_s / 3600.0 * self.gb_hour
        return cost

    def to_json(self) -> dict[str, Any]:
        return {"cpu_hour": self.cpu_hour, "gb_hour": self.gb_hour}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CostRates:
        return cls(float(data.get("cpu_hour", 0.0)), float(data.get("gb_hour", 0.0)))


def fmt_cost(value: float) -> str:
    """A cost for people: 4 significant digits below 1, 2 decimals above."""
    return _fmt_cost(value)
