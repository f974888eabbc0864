"""Shared pieces of the benchmarks: timing, workload builders, state-dir helpers, the table.

Workloads follow /work/shared/PEERS.md: W1 is a chain of no-op steps where each step *receives its
upstream's value* through a parameter named after the upstream step. flowkit binds data by
parameter name, so each step of a generated chain needs its own parameter name: the chain's
functions are generated from source with ``exec`` (one distinct function per step, as a real
project would have). The plain-Python baselines call exactly the same function objects.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkit import Flow

Fn = Callable[..., Any]


# --- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    """Wall-clock samples of one measurement, in seconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> str:
        """``min–max`` of the samples, for the table's notes."""
        return f"{min(self.samples):.3g}–{max(self.samples):.3g} s"


def repeat(reps: int, trial: Callable[[], float]) -> Stats:
    """Run ``trial`` ``reps`` times (a full collection before each); it returns its own time.

    Trials time themselves so that setup (building functions, temp dirs) stays out of the figure.
    """
    out = []
    for _ in range(reps):
        gc.collect()
        out.append(trial())
    return Stats(tuple(out))


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_cpu(fn: Callable[[], Any], cpu: list[float]) -> float:
    """Wall seconds ``fn()`` takes; appends the CPU seconds of this process to ``cpu``.

    CPU time is less disturbed than wall time by other processes on a shared machine; it is
    given in the notes of the sequential (inline) figures, where it should match wall time.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    cpu.append(time.process_time() - c0)
    return wall


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# --- state dirs ---------------------------------------------------------------------------------

#: Temp folders go on the same disk as /tmp (ext4 here, so fsync is real, not a tmpfs no-op).
TMP_ROOT = Path(os.environ.get("FLOWKIT_BENCH_TMP") or tempfile.gettempdir())


@contextmanager
def state_dir() -> Iterator[Path]:
    """A fresh, empty state folder, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="flowkit-bench-", dir=TMP_ROOT))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def dir_size(path: Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- workloads ----------------------------------------------------------------------------------


def noop() -> None:
    """A step that does nothing (module level, so process workers can unpickle it)."""


def nap(seconds: float = 0.05) -> None:
    """A step that sleeps (module level, so it pickles)."""
    time.sleep(seconds)


def chain_functions(n: int, variant: int = 0) -> list[Fn]:
    """``s0() -> 0``, ``s1(s0) -> s0``, ... ``s{n-1}(s{n-2})``: n distinct no-op functions.

    ``variant`` shifts the generated source down by that many lines, which gives brand-new code
    objects with the same bytecode: flowkit's per-process code-hash cache (keyed by code object)
    starts cold, as in a new process, while the code hashes, and so the cache keys, stay equal.
    """
    parts = ["\n" * variant, "def s0():\n    return 0\n"]
    parts.extend(f"def s{i}(s{i - 1}):\n    return s{i - 1}\n" for i in range(1, n))
    ns: dict[str, Any] = {}
    exec(compile("".join(parts), f"<flowkit-bench-chain-{variant}>", "exec"), ns)
    return [ns[f"s{i}"] for i in range(n)]


def chain_flow(fns: list[Fn], name: str = "chain") -> Flow:
    """Register a generated chain: each step's parameter names its upstream (a data edge)."""
    f = Flow(name)
    for fn in fns:
        f.step(name=fn.__name__)(fn)
    return f


def plain_chain(fns: list[Fn]) -> Any:
    """The floor: call the same chain functions in a loop, passing each value on."""
    it = iter(fns)
    value = next(it)()
    for fn in it:
        value = fn(value)
    return value


def fanout_flow(n: int, fn: Fn = noop, name: str = "fanout") -> Flow:
    """``n`` independent steps that all call ``fn``."""
    f = Flow(name)
    for i in range(n):
        f.step(name=f"t{i}")(fn)
    return f


def warm_up() -> None:
    """Run a one-step flow once, so lazy imports and first-call costs stay out of the figures."""
    with state_dir() as d:
        fanout_flow(1).run(state_dir=d, fresh=True)
        fanout_flow(2).run(state_dir=d, fresh=True, workers=2)


# --- results and the table ----------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One figure: flowkit's number next to a baseline measured in the same process run.

    ``value`` and ``baseline`` are seconds unless ``unit`` says otherwise. ``target`` is an upper
    bound on ``target_of`` (``"value"``, or ``"per_step"`` µs/step); ``None``: no target.
    """

    key: str
    label: str
    value: float
    baseline: float | None = None
    baseline_label: str = ""
    n: int | None = None
    per_step_us: float | None = None
    unit: str = "s"
    target: float | None = None
    target_of: str = "value"
    target_text: str = ""
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline <= 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        got = self.per_step_us if self.target_of == "per_step" else self.value
        return None if got is None else got <= self.target


def fmt_value(v: float | None, unit: str = "s") -> str:
    if v is None:
        return "–"
    if unit == "s":
        if v >= 100:
            return f"{v:.0f} s"
        if v >= 1:
            return f"{v:.2f} s"
        if v >= 0.001:
            return f"{v * 1000:.1f} ms"
        return f"{v * 1e6:.0f} µs"
    if unit == "MB":
        return f"{v:.1f} MB" if v >= 1 else f"{v:.2f} MB"
    return f"{v:.3g} {unit}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "–"
    return f"{r:.0f}×" if r >= 100 else f"{r:.2f}×" if r < 10 else f"{r:.1f}×"


def table(rows: list[Row]) -> str:
    """The figures as an aligned text table (also valid Markdown)."""
    head = ["#", "figure", "flowkit", "baseline", "ratio", "µs/step", "target", "met"]
    body = []
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r.met]
        base = fmt_value(r.baseline, r.unit) if r.baseline is not None else "–"
        if r.baseline_label:
            base = f"{base} ({r.baseline_label})"
        body.append(
            [
                r.key,
                r.label,
                fmt_value(r.value, r.unit),
                base,
                fmt_ratio(r.ratio),
                "–" if r.per_step_us is None else f"{r.per_step_us:.1f}",
                r.target_text,
                met,
            ]
        )
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def notes(rows: list[Row]) -> str:
    return "\n".join(f"  {r.key}: {r.note}" for r in rows if r.note)
