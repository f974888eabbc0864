"""The run report as a few lines of text (``flowkit report``), and one alert's line."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..cost import CostRates, fmt_cost
from ..result import fmt_duration, shown
from .model import RunReport

__all__ = ["alert_line", "fmt_time", "one_line", "rates_text", "render_text"]


def render_text(report: RunReport, *, slowest: int = 5) -> str:
    """A short plain-text report: verdict, counts, failures, skips and the slowest steps."""
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items()) or "no steps"
    lines = [f"Flow {shown(report.flow)}, run {shown(report.run_id)}: {report.status}"]
    when = fmt_time(report.started) if report.started is not None else "never"
    took = fmt_duration(report.duration) if report.duration is not None else "unknown"
    lines.append(f"  session {report.sessions} started {when}, took {took}")
    if report.params:
        lines.append(f"  params: {', '.join(f'{k}={v!r}' for k, v in report.params.items())}")
    lines.append(f"  steps: {counts}")
    failed = [r for r in report.steps if r.status in ("failed", "timed_out", "interrupted")]
    for r in failed:
        what = f"{r.error_type}: {r.error_message}" if r.error_type else r.reason
        lines.append(f"  {r.status.upper()} {shown(r.name)}: {one_line(what)}")
    for r in report.steps:
        if r.status in ("upstream_failed", "skipped"):
            lines.append(f"  {r.status} {shown(r.name)}: {one_line(r.reason)}")
    ran = sorted(
        (r for r in report.steps if r.on_timeline and r.duration is not None),
        key=lambda r: -(r.duration or 0.0),
    )[:slowest]
    if ran:
        lines.append(
            "  slowest: "
            + ", ".join(f"{shown(r.name)} ({fmt_duration(r.duration or 0.0)})" for r in ran)
        )
    lines += [f"  alert {alert_line(a)}" for a in report.alerts]
    if report.rates is not None:
        lines.append(f"  cost: {fmt_cost(report.cost or 0.0)} ({rates_text(report.rates)})")
        costly = sorted(
            ((c, r.name) for r in report.steps if (c := report.step_cost(r))),
            key=lambda x: -x[0],
        )[:slowest]
        if costly:
            lines.append("  costliest: " + ", ".join(f"{n} ({fmt_cost(c)})" for c, n in costly))
    return "\n".join(lines)


def rates_text(rates: CostRates) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in rates.to_json().items())


def alert_line(a: Mapping[str, Any]) -> str:
    """``slack (message) to https://hooks.slack.com/…: delivered`` (or why not)."""
    what = f"{a.get('notifier', '?')} ({a.get('event', '?')}) to {a.get('target', '?')}"
    if a.get("ok"):
        return f"{what}: delivered"
    n = a.get("attempts") if isinstance(a.get("attempts"), int) else 0
    return f"{what}: NOT delivered after {n} attempt(s): {one_line(str(a.get('error', '')))}"


def one_line(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))
