"""What a report shows of a run: :func:`collect` turns its journal into a :class:`RunReport`.

Each step's status, times, attempts and error come from :mod:`flowkit.stepview` (the one place
that reads a step's latest session from its journal); this module adds where the step sits in
the graph and the tail of its log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..attempts import Attempt, AttemptLog
from ..cost import CostRates
from ..flow import Flow
from ..graph import GraphShape
from ..stepview import StepView, gathered, view_step, views_of
from ..store import LoadedState
from ..views import STATUS_COLOURS

__all__ = [
    "LOG_LINES",
    "LOG_STEP_BYTES",
    "LOG_TOTAL_BYTES",
    "STATUSES",
    "RunReport",
    "StepRow",
    "collect",
    "step_rows",
]

#: Every status a report row can have, in display order, with its colour.
STATUSES = STATUS_COLOURS

#: The end of each step's log the page embeds: at most this many lines, and bytes...
LOG_LINES, LOG_STEP_BYTES = 40, 4096
#: ...and all steps' tails together at most this many bytes (failed steps are served first).
LOG_TOTAL_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step as the report shows it."""

    name: str
    tier: int
    status: str
    attempts: int | None = None
    duration: float | None = None
    cpu: float | None = None
    peak_rss: int | None = None
    start: float | None = None
    end: float | None = None
    worker: str | None = None
    reason: str = ""
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    earlier: bool = False  # its record is from an earlier session, which the latest did not touch
    data_deps: tuple[str, ...] = ()
    order_deps: tuple[str, ...] = ()
    parent: str | None = None  # set on a fan-out instance (``load[7]``): the step it belongs to
    retried: tuple[tuple[int, str, float], ...] = ()  # (attempt, error, delay) of retried attempts

    @property
    def on_timeline(self) -> bool:
        """Executed in the latest session, with a known start (so it can be drawn in time)."""
        return self.start is not None and self.status != "cached" and not self.earlier

    @classmethod
    def of(
        cls,
        view: StepView,
        tier: int,
        data_deps: tuple[str, ...] = (),
        order_deps: tuple[str, ...] = (),
    ) -> StepRow:
        """The row of a :class:`~flowkit.stepview.StepView` at ``tier`` of the graph."""
        err = view.error
        return cls(
            name=view.name,
            tier=tier,
            status=view.status,
            attempts=view.attempts,
            duration=view.duration,
            cpu=view.cpu,
            peak_rss=view.peak_rss,
            start=view.start,
            end=view.end,
            worker=view.worker,
            reason=view.reason,
            error_type=err.type if err is not None else "",
            error_message=err.message if err is not None else "",
            traceback=err.traceback if err is not None else "",
            earlier=view.earlier,
            data_deps=data_deps,
            order_deps=order_deps,
            parent=view.parent,
            retried=view.retried,
        )


@dataclass(frozen=True, slots=True)
class RunReport:
    """A run, reduced to what a report shows."""

    flow: str
    run_id: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    sessions: int = 0
    steps: list[StepRow] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # the latest session's deliveries
    #: each step's attempts in the latest session (one timeline bar each), when they were read
    attempts: Mapping[str, Sequence[Attempt]] = field(default_factory=dict)
    rates: CostRates | None = None  # price the steps run (none: no cost shown)
    #: the end of each step's log (bounded, see LOG_LINES), when the logs were read
    logs: Mapping[str, str] = field(default_factory=dict)

    def step_cost(self, row: StepRow) -> float | None:
        """What running ``row`` cost in the latest session (None: no rates, or not run then)."""
        if self.rates is None or not row.on_timeline or row.status in ("running", "pending"):
            return None
        wall = row.end - row.start if row.end is not None and row.start is not None else None
        return self.rates.of(row.cpu, row.peak_rss, wall)

    @property
    def cost(self) -> float | None:
        """The cost of the steps run in the latest session, or None without rates."""
        if self.rates is None:
            return None
        return sum(self.step_cost(r) or 0.0 for r in self.steps)

    @property
    def duration(self) -> float | None:
        """Wall time of the latest session (to its last step end if it did not finish)."""
        if self.started is None:
            return None
        end = self.ended
        if end is None:
            ends = [r.end for r in self.steps if r.on_timeline and r.end is not None]
            end = max(ends, default=None)
        return None if end is None else max(0.0, end - self.started)

    @property
    def cpu(self) -> float:
        """CPU seconds of the steps executed in the latest session."""
        return sum(r.cpu or 0.0 for r in self.steps if r.on_timeline)

    def counts(self) -> dict[str, int]:
        """Steps per status, in :data:`STATUSES` order, zero counts omitted."""
        c = Counter(r.status for r in self.steps)
        return {s: c[s] for s in STATUSES if c[s]}


def collect(
    flow: Flow | GraphShape,
    state: LoadedState,
    *,
    run_id: str | None = None,
    running: bool = False,
    attempts: AttemptLog | None = None,
    rates: CostRates | None = None,
    logs: Path | None = None,
) -> RunReport:
    """Derive the report of a run from its loaded journal.

    Fan-out instances found in the journal (``load[7]``, ``fit[lr=0.1]``) get rows of their own,
    right after their step's row, and bars on the timeline; the graph shows only their step.

    Args:
        flow: the flow, or its :class:`~flowkit.graph.GraphShape` (the steps, their tiers and
            dependencies, as saved with the run).
        state: what ``flow.load_state(...)`` returned for the run.
        run_id: the run's id (default: the one in the journal's latest header).
        running: a process holds the run right now (steps started but not finished are
            ``running``, not ``interrupted``).
        attempts: the run's attempts (``AttemptLog.read(journal)``): the timeline then has
            one bar per attempt, and the wait before each retry; without it, one bar per step.
        rates: cost rates: each step's cost and the total are shown (see :mod:`flowkit.cost`).
        logs: the run's log folder: the end of each step's log is embedded (bounded).
    """
    shape = flow if isinstance(flow, GraphShape) else flow.graph().shape()
    header = state.headers[-1] if state.headers else {}
    rows: list[StepRow] = []
    for view, subs in views_of(shape.order, state, running=running, attempts=attempts):
        tier = shape.tier_of(view.name)
        rows.append(StepRow.of(view, tier, *shape.deps[view.name]))
        rows.extend(StepRow.of(s, tier) for s in subs)
    if running:
        status = "running"
    elif state.end is not None:
        status = str(state.end.get("status", "unknown"))
    else:
        status = "interrupted" if state.headers else "no state"
    return RunReport(
        flow=shape.flow,
        run_id=run_id or str(header.get("run_id", "")),
        status=status,
        params=dict(header.get("params") or {}),
        started=_num(header.get("time")),
        ended=None if state.end is None or running else _num(state.end.get("time")),
        sessions=len(state.headers),
        steps=rows,
        alerts=list(state.notifications),
        attempts=attempts.by_step if attempts is not None else {},
        rates=rates,
        logs=log_tails(logs, rows) if logs is not None else {},
    )


def step_rows(
    shape: GraphShape,
    state: LoadedState,
    name: str,
    instances: Iterable[str] = (),
    *,
    running: bool = False,
    attempts: AttemptLog | None = None,
) -> tuple[StepRow, list[StepRow]]:
    """The row of one step of ``shape`` and the rows of its fan-out ``instances``.

    The step's status is ``cached`` when it only gathered restored instances. Arguments are
    as for :func:`collect`; :func:`~flowkit.stepview.instances_of` finds the instances.
    """
    tier = shape.tier_of(name)
    tries = attempts.by_step if attempts is not None else {}
    subs = [
        view_step(i, state, running=running, tries=tries.get(i, ()), parent=name) for i in instances
    ]
    view = gathered(view_step(name, state, running=running, tries=tries.get(name, ())), subs)
    return StepRow.of(view, tier, *shape.deps[name]), [StepRow.of(s, tier) for s in subs]


def log_tails(
    folder: Path,
    rows: Sequence[StepRow],
    *,
    lines: int = LOG_LINES,
    per_step: int = LOG_STEP_BYTES,
    total: int = LOG_TOTAL_BYTES,
) -> dict[str, str]:
    """The end of each step's log in ``folder`` (``<step>.log``): its last ``lines`` lines, at
    most ``per_step`` bytes, and ``total`` bytes for all; failed steps first, then in order."""
    from ..keys import safe_name

    out: dict[str, str] = {}
    budget = total
    first = sorted(range(len(rows)), key=lambda i: (rows[i].status not in _FIRST, i))
    for i in first:
        name = rows[i].name
        path = folder / f"{safe_name(name)}.log"
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                take = min(size, per_step)
                if take > budget:
                    break  # the page has all the log it may hold
                f.seek(size - take)
                data = f.read(take)
        except OSError:
            continue
        if not data:
            continue
        text = data.decode("utf-8", errors="replace")
        cut = text.splitlines()
        if take < size and len(cut) > 1:
            cut = cut[1:]  # the first line was read from its middle
        tail = "\n".join(cut[-lines:])
        out[name] = tail
        budget -= len(tail.encode("utf-8"))
    return out


_FIRST = frozenset({"failed", "timed_out", "interrupted", "retrying", "running"})


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
