"""Run reports: one self-contained HTML page (or a few lines of text) describing a run.

The data comes from the run's journal (:class:`~flowkit.store.LoadedState`):
:func:`collect` turns it into a :class:`RunReport` (one :class:`StepRow` per step, in topological
order, with the status the step has *in the latest session*: a step restored from the journal is
``cached``), :func:`render_html` draws it and :func:`render_text` summarises it.

The HTML page needs no network: inline CSS, inline SVG (the graph, by topological tier, and a
timeline of step start/end per worker) and a few lines of inline JavaScript (table filter, "fit"
toggle). Every string that comes from the flow or the journal is escaped. Large flows stay
usable: tall tiers wrap into sub-columns, both drawings scroll inside a bounded box, and error
tracebacks are cut to an excerpt.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from typing import Any

from .attempts import Attempt, AttemptLog
from .flow import Flow
from .graph import GraphShape
from .result import ErrorInfo, fmt_duration, shown
from .store import LoadedState, duration_of, skip_status
from .views import STATUS_COLOURS

__all__ = [
    "STATUSES",
    "RunReport",
    "StepRow",
    "alert_line",
    "collect",
    "graph_svg",
    "instances_of",
    "render_html",
    "render_text",
    "step_rows",
    "stylesheet",
]

#: Every status a report row can have, in display order, with its colour.
STATUSES = STATUS_COLOURS

# Graph layout (pixels).
NODE_W, NODE_H = 168, 24
ROW_PITCH = 32
SUB_GAP, TIER_GAP, MARGIN = 16, 56, 16
MAX_ROWS = 40  # a tier with more steps wraps into several sub-columns
LABEL_CHARS = 23
MAX_EDGES = 20_000  # beyond this the edges are omitted (they would be an unreadable mesh)

# Timeline layout (pixels).
LANE_LABEL_W, PLOT_W, BAR_H, BAR_PITCH, AXIS_H = 170, 960, 14, 18, 26

TRACEBACK_LINES, TRACEBACK_CHARS, MESSAGE_CHARS = 30, 4000, 600


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


# --- collecting ---------------------------------------------------------------------------------


def collect(
    flow: Flow | GraphShape,
    state: LoadedState,
    *,
    run_id: str | None = None,
    running: bool = False,
    attempts: AttemptLog | None = None,
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
    """
    shape = flow if isinstance(flow, GraphShape) else flow.graph().shape()
    header = state.headers[-1] if state.headers else {}
    fanned = instances_of(shape, state)
    rows: list[StepRow] = []
    for name in shape.order:
        row, subs = step_rows(shape, state, name, fanned.get(name, ()), running=running)
        rows.append(row)
        rows.extend(subs)
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
    )


def step_rows(
    shape: GraphShape,
    state: LoadedState,
    name: str,
    instances: Iterable[str] = (),
    *,
    running: bool = False,
) -> tuple[StepRow, list[StepRow]]:
    """The row of one step of ``shape`` and the rows of its fan-out ``instances``.

    The step's status is ``cached`` when it only gathered restored instances. Arguments are
    as for :func:`collect`; :func:`instances_of` finds the instances.
    """
    tier = shape.tier_of(name)
    header = state.headers[-1] if state.headers else {}
    started = _num(header.get("time"))
    finished = state.end is not None
    data_deps, order_deps = shape.deps[name]
    row = _row(name, tier, state, started, running, finished, data_deps, order_deps)
    subs = [_row(i, tier, state, started, running, finished, parent=name) for i in instances]
    statuses = {s.status for s in subs}
    if row.status == "succeeded" and "cached" in statuses and statuses <= {"cached", "skipped"}:
        row = replace(row, status="cached")  # gathered from restored instances only
    return row, subs


def instances_of(shape: GraphShape, state: LoadedState) -> dict[str, list[str]]:
    """The fan-out instances in the journal, by step, in journal order."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for name in (*state.steps, *state.session):
        if name in shape.deps or name in seen:
            continue
        base = name.split("[", 1)[0]
        if base != name and base in shape.deps:
            out.setdefault(base, []).append(name)
            seen.add(name)
    return out


def _row(
    name: str,
    tier: int,
    state: LoadedState,
    session_start: float | None,
    running: bool,
    finished: bool,
    data_deps: tuple[str, ...] = (),
    order_deps: tuple[str, ...] = (),
    parent: str | None = None,
) -> StepRow:
    base: dict[str, Any] = {
        "name": name,
        "tier": tier,
        "data_deps": data_deps,
        "order_deps": order_deps,
        "parent": parent,
    }
    base["retried"] = tuple(
        (int(x.get("attempt", 0)), _error_text(x.get("error")), float(x.get("delay", 0.0)))
        for x in state.retries.get(name, ())
    )
    done = state.steps.get(name)
    sess = state.session.get(name)
    ev = sess.get("ev") if sess is not None else None
    if sess is not None and ev == "start":
        return StepRow(
            status="running" if running else "interrupted",
            attempts=_int(sess.get("attempt", 1)),
            start=_num(sess.get("time")),
            reason="started, never finished" if not running else "",
            **base,
        )
    if sess is not None and ev == "skip":
        return StepRow(status=skip_status(sess), reason=str(sess.get("reason", "")), **base)
    if done is None:
        return StepRow(status="pending", reason="not reached" if finished else "", **base)
    err = done.get("error") or {}
    status = str(done.get("status", "pending"))
    # a step that ran for the first time has no reason in its record: "new" is the default
    reason = str(done.get("reason") or ("new" if status == "succeeded" else ""))
    earlier = False
    if sess is not None and ev == "cached":
        status = "cached"
        reason = "unchanged; earlier result reused" + (f" (it ran: {reason})" if reason else "")
    elif session_start is not None:
        end = _num(done.get("end"))
        earlier = end is not None and end < session_start
    return StepRow(
        status=status,
        attempts=_int(done.get("attempts")),
        duration=duration_of(done),
        cpu=_num(done.get("cpu")),
        peak_rss=_int(done.get("peak_rss")),
        start=_num(done.get("start")),
        end=_num(done.get("end")),
        worker=str(done["worker"]) if done.get("worker") is not None else None,
        reason=reason,
        error_type=str(err.get("type", "")) if isinstance(err, Mapping) else "",
        error_message=str(err.get("message", "")) if isinstance(err, Mapping) else "",
        traceback=str(err.get("traceback", "")) if isinstance(err, Mapping) else "",
        earlier=earlier,
        **base,
    )


def _error_text(err: Any) -> str:
    return str(ErrorInfo.from_json(err)) if isinstance(err, Mapping) else ""


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


# --- text ---------------------------------------------------------------------------------------


def render_text(report: RunReport, *, slowest: int = 5) -> str:
    """A short plain-text report: verdict, counts, failures, skips and the slowest steps."""
    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items()) or "no steps"
    lines = [f"Flow {shown(report.flow)}, run {shown(report.run_id)}: {report.status}"]
    when = _fmt_time(report.started) if report.started is not None else "never"
    took = fmt_duration(report.duration) if report.duration is not None else "unknown"
    lines.append(f"  session {report.sessions} started {when}, took {took}")
    if report.params:
        lines.append(f"  params: {', '.join(f'{k}={v!r}' for k, v in report.params.items())}")
    lines.append(f"  steps: {counts}")
    failed = [r for r in report.steps if r.status in ("failed", "timed_out", "interrupted")]
    for r in failed:
        what = f"{r.error_type}: {r.error_message}" if r.error_type else r.reason
        lines.append(f"  {r.status.upper()} {shown(r.name)}: {_one_line(what)}")
    for r in report.steps:
        if r.status in ("upstream_failed", "skipped"):
            lines.append(f"  {r.status} {shown(r.name)}: {_one_line(r.reason)}")
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
    return "\n".join(lines)


def alert_line(a: Mapping[str, Any]) -> str:
    """``slack (message) to https://hooks.slack.com/…: delivered`` (or why not)."""
    what = f"{a.get('notifier', '?')} ({a.get('event', '?')}) to {a.get('target', '?')}"
    if a.get("ok"):
        return f"{what}: delivered"
    n = _int(a.get("attempts")) or 0
    return f"{what}: NOT delivered after {n} attempt(s): {_one_line(str(a.get('error', '')))}"


def _one_line(text: str, limit: int = 160) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _fmt_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(t))


# --- HTML ---------------------------------------------------------------------------------------


def render_html(
    flow: Flow,
    state: LoadedState,
    *,
    run_id: str | None = None,
    running: bool = False,
    attempts: AttemptLog | None = None,
) -> str:
    """The run as one self-contained HTML page (no network access needed to view it).

    The page holds a summary (flow, run id, params, status, counts, duration), the graph as an
    inline SVG (one ``g.node`` per step, coloured by status; dashed edges for order-only
    dependencies), a timeline of the steps executed in the latest session per worker (one
    labelled bar per attempt and a hatched wait before each retry when ``attempts`` is given,
    else one bar per step), and a table of every step. Arguments are as for :func:`collect`.
    """
    report = collect(flow, state, run_id=run_id, running=running, attempts=attempts)
    return render_report_html(report)


def render_report_html(report: RunReport) -> str:
    """:func:`render_html` for an already collected :class:`RunReport`."""
    e = _esc
    title = f"flowkit · {report.flow} · {report.run_id}"
    rows = report.steps
    index = {r.name: i for i, r in enumerate(rows)}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_css()}</style></head>",
        "<body>",
        _summary_html(report),
        '<section id="graph"><h2>Graph</h2>',
        '<p class="hint">Steps by topological tier, left to right; dashed edges are order-only '
        "dependencies. Click a step to see its row. "
        '<button type="button" id="fit">Fit to width</button></p>',
        f'<div class="scroll" id="graph-box">{_dag_svg(rows, index)}</div>',
        _legend_html(),
        "</section>",
        '<section id="timeline"><h2>Timeline</h2>',
        f'<div class="scroll" id="timeline-box">{_timeline_svg(report, index)}</div>',
        "</section>",
        '<section id="steps"><h2>Steps</h2>',
        '<p><input id="filter" type="search" placeholder="Filter steps by name, status, '
        'reason or error" size="50"> <span id="shown"></span></p>',
        _table_html(report, index),
        "</section>",
        f"<footer>Generated by flowkit at {e(_fmt_time(time.time()))}.</footer>",
        f"<script>{_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _esc(value: object) -> str:
    return escape(str(value), quote=True)


def stylesheet() -> str:
    """The report's CSS (status colours ``.st-<status>``, graph nodes, bars, tables)."""
    return _css()


def _css() -> str:
    status_rules = []
    for s, colour in STATUSES.items():
        text = "#222" if s == "pending" else "#fff"
        status_rules.append(
            f".st-{s}{{background:{colour};color:{text}}}"
            f"g.node.st-{s} rect,rect.bar.st-{s}{{fill:{colour}}}"
            f"g.node.st-{s} text{{fill:{text}}}"
        )
    return (
        "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
        "margin:0 24px 24px;color:#222;background:#fafafa}"
        "h1{font-size:22px;margin:16px 0 8px}h2{font-size:17px;margin:24px 0 8px}"
        ".badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;"
        "vertical-align:middle;font-weight:600}"
        "dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}"
        "dl.summary dt{color:#666}dl.summary dd{margin:0;word-break:break-all}"
        ".counts button{border:0;border-radius:10px;padding:2px 10px;margin:2px 4px 2px 0;"
        "cursor:pointer;font-size:13px}"
        ".scroll{overflow:auto;max-height:70vh;max-width:100%;border:1px solid #ddd;"
        "background:#fff}"
        "svg{display:block}svg.fit{width:100%;height:auto}"
        "g.node rect{stroke:#0003;stroke-width:1}g.node text{font:11px ui-monospace,monospace}"
        "g.node:hover rect{stroke:#000;stroke-width:2}g.node rect.stack{opacity:.55}"
        "path.edge{fill:none;stroke:#8a8a8a;stroke-width:1;opacity:.7}"
        "path.edge.order{stroke-dasharray:4 3}"
        ".axis text,.lane text{font:11px system-ui,sans-serif;fill:#555}"
        ".axis line{stroke:#e5e5e5}"
        "rect.bar{stroke:#0003;stroke-width:.5}rect.bar:hover{stroke:#000;stroke-width:1.5}"
        "rect.wait{fill:url(#hatch);stroke:#bbb}"
        "text.bar-label{fill:#fff;font-size:10px;pointer-events:none}"
        ".legend span{display:inline-block;padding:0 8px;margin:6px 4px 0 0;border-radius:8px;"
        "font-size:12px}"
        "table{border-collapse:collapse;width:100%;background:#fff}"
        "th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:left;vertical-align:top}"
        "th{position:sticky;top:0;background:#f0f0f0}td.num{text-align:right;"
        "font-variant-numeric:tabular-nums;white-space:nowrap}"
        "td.name{font-family:ui-monospace,monospace;overflow-wrap:anywhere;min-width:12ch}"
        "tr:target{background:#fff59d}tr.earlier td{color:#777}"
        "tr.instance td.name{padding-left:2em}"
        "pre{white-space:pre-wrap;font-size:12px;background:#f6f6f6;padding:6px;margin:4px 0;"
        "max-height:320px;overflow:auto}"
        ".hint{color:#666;font-size:13px}footer{margin-top:24px;color:#888;font-size:12px}"
        + "".join(status_rules)
    )


def _summary_html(report: RunReport) -> str:
    e = _esc
    params = ", ".join(f"{k}={v!r}" for k, v in report.params.items()) or "none"
    started = _fmt_time(report.started) if report.started is not None else "—"
    dur = fmt_duration(report.duration) if report.duration is not None else "—"
    items = [
        ("Run id", f'<span id="run-id">{e(report.run_id)}</span>'),
        ("Parameters", f'<span id="params">{e(params)}</span>'),
        ("Started", e(started)),
        ("Duration", f'<span id="duration">{e(dur)}</span>'),
        ("CPU (steps run)", e(fmt_duration(report.cpu))),
        ("Sessions", f"{report.sessions} (this report shows the latest)"),
        ("Steps", str(len(report.steps))),
    ]
    if report.alerts:
        alerts = "<br>".join(e(alert_line(a)) for a in report.alerts)
        items.append(("Alerts", f'<span id="alerts">{alerts}</span>'))
    chips = "".join(
        f'<button type="button" class="st-{e(s)}" data-status="{e(s)}">{n} {e(s)}</button>'
        for s, n in report.counts().items()
    )
    status_cls = report.status if report.status in STATUSES else "pending"
    return (
        f'<header><h1>Flow <span id="flow-name">{e(report.flow)}</span> '
        f'<span id="run-status" class="badge st-{e(status_cls)}">{e(report.status)}</span></h1>'
        '<dl class="summary">'
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
        + f'</dl><div class="counts" id="counts">{chips}'
        '<button type="button" data-status="" style="background:#eee">all</button></div>'
        "</header>"
    )


def _legend_html() -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span class="st-{s}">{s}</span>' for s in STATUSES)
        + "</div>"
    )


def _dag_layout(rows: list[StepRow]) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Top-left corner of each node, and the drawing's width and height.

    Tiers are columns; within a tier, steps are ordered by the mean position of their upstreams
    (fewer crossings) and a tier taller than MAX_ROWS wraps into sub-columns.
    """
    tiers: dict[int, list[StepRow]] = {}
    for r in rows:
        tiers.setdefault(r.tier, []).append(r)
    rel: dict[str, float] = {}  # relative vertical position 0..1 within its tier
    ordered: list[list[str]] = []
    for t in sorted(tiers):
        members = tiers[t]

        def bary(r: StepRow) -> tuple[float, str]:
            ups = [rel[u] for u in (*r.data_deps, *r.order_deps) if u in rel]
            return (sum(ups) / len(ups) if ups else 0.5, r.name)

        names = [r.name for r in (sorted(members, key=bary) if t else members)]
        for i, n in enumerate(names):
            rel[n] = (i + 0.5) / len(names)
        ordered.append(names)
    height_rows = max((min(len(t), MAX_ROWS) for t in ordered), default=1)
    height = 2 * MARGIN + height_rows * ROW_PITCH - (ROW_PITCH - NODE_H)
    pos: dict[str, tuple[float, float]] = {}
    x = float(MARGIN)
    for names in ordered:
        cols = math.ceil(len(names) / MAX_ROWS)
        for c in range(cols):
            chunk = names[c * MAX_ROWS : (c + 1) * MAX_ROWS]
            top = MARGIN + (height_rows - len(chunk)) * ROW_PITCH / 2
            for i, n in enumerate(chunk):
                pos[n] = (x, top + i * ROW_PITCH)
            x += NODE_W + (SUB_GAP if c < cols - 1 else TIER_GAP)
    width = x - TIER_GAP + MARGIN if ordered else 2 * MARGIN
    return pos, width, float(height)


def graph_svg(rows: Sequence[StepRow]) -> str:
    """The graph as an inline SVG: one ``g.node`` per step (``data-step``, ``data-status``, class
    ``st-<status>``) linking to ``#row-<i>``, its row's position in ``rows``."""
    return _dag_svg(rows, {r.name: i for i, r in enumerate(rows)})


def _dag_svg(all_rows: Sequence[StepRow], index: Mapping[str, int]) -> str:
    e = _esc
    fanned = Counter(r.parent for r in all_rows if r.parent is not None)
    rows = [r for r in all_rows if r.parent is None]
    pos, width, height = _dag_layout(rows)
    n_edges = sum(len(r.data_deps) + len(r.order_deps) for r in rows)
    out = [
        f'<svg id="dag" role="img" aria-label="graph of {len(rows)} steps" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" '
        'markerHeight="6" orient="auto"><path d="M0,0L8,4L0,8z" fill="#8a8a8a"/></marker></defs>',
    ]
    if n_edges <= MAX_EDGES:
        out.append('<g class="edges">')
        for r in rows:
            x2, y2 = pos[r.name]
            y2 += NODE_H / 2
            for deps, cls in ((r.data_deps, "edge"), (r.order_deps, "edge order")):
                for d in deps:
                    if d not in pos:
                        continue
                    x1, y1 = pos[d]
                    x1, y1 = x1 + NODE_W, y1 + NODE_H / 2
                    mx = (x1 + x2) / 2
                    out.append(
                        f'<path class="{cls}" data-from="{e(d)}" data-to="{e(r.name)}" '
                        f'd="M{x1:.0f},{y1:.0f}C{mx:.0f},{y1:.0f} {mx:.0f},{y2:.0f} '
                        f'{x2:.0f},{y2:.0f}" marker-end="url(#arrow)"/>'
                    )
        out.append("</g>")
    else:
        out.append(
            f'<text x="{MARGIN}" y="{MARGIN / 2 + 4:.0f}" font-size="11" fill="#c62828">'
            f"{n_edges} edges: too many to draw</text>"
        )
    out.append('<g class="nodes">')
    for r in rows:
        x, y = pos[r.name]
        label = r.name if len(r.name) <= LABEL_CHARS else r.name[: LABEL_CHARS - 1] + "…"
        tip = f"{r.name} — {r.status}"
        if r.duration is not None:
            tip += f", {fmt_duration(r.duration)}"
        if r.attempts and r.attempts > 1:
            tip += f", {r.attempts} attempts"
        if fanned[r.name]:
            tip += f", {fanned[r.name]} instances"
        if r.reason:
            tip += f"\n{r.reason}"
        stack = (
            f'<rect class="stack" x="3" y="-3" width="{NODE_W}" height="{NODE_H}" rx="4"/>'
            if fanned[r.name]
            else ""
        )
        out.append(
            f'<a href="#row-{index[r.name]}"><g class="node st-{e(r.status)}" '
            f'data-step="{e(r.name)}" data-status="{e(r.status)}" '
            f'transform="translate({x:.0f},{y:.0f})"><title>{e(tip)}</title>{stack}'
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="4"/>'
            f'<text x="6" y="16">{e(label)}</text></g></a>'
        )
    out.append("</g></svg>")
    return "".join(out)


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target if span > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return float(m * mag)
    return float(10 * mag)


def _pack(bars: Iterable[tuple[float, float, StepRow]]) -> list[list[tuple[float, float, StepRow]]]:
    """Greedy interval packing: bars that overlap in time go on separate rows of a lane."""
    rows: list[list[tuple[float, float, StepRow]]] = []
    ends: list[float] = []
    for bar in sorted(bars, key=lambda b: (b[0], b[1])):
        for i, end in enumerate(ends):
            if bar[0] >= end:
                rows[i].append(bar)
                ends[i] = bar[1]
                break
        else:
            rows.append([bar])
            ends.append(bar[1])
    return rows


def _timeline_svg(report: RunReport, index: Mapping[str, int]) -> str:
    e = _esc
    ran = [r for r in report.steps if r.on_timeline]
    if not ran:
        return (
            '<p class="hint" id="timeline-empty" style="margin:8px">No step was executed in the '
            "latest session (everything was cached, skipped or not reached).</p>"
        )
    tries = {r.name: _placed(report.attempts.get(r.name, ())) for r in ran}
    t0 = min(min(_first_start(r, tries[r.name]) for r in ran), report.started or math.inf)
    fallback_end = report.ended or max((r.end or r.start or t0) for r in ran)
    t1 = max(max((r.end or fallback_end) for r in ran), fallback_end, t0 + 1e-3)
    scale = PLOT_W / (t1 - t0)
    lanes: dict[str, list[tuple[float, float, StepRow]]] = {}
    for r in ran:
        start = _first_start(r, tries[r.name])
        end = r.end if r.end is not None else fallback_end
        lanes.setdefault(r.worker or "(worker not recorded)", []).append((start, end, r))
    order = sorted(lanes, key=lambda w: (w.startswith("("), min(b[0] for b in lanes[w]), w))
    packed = {w: _pack(lanes[w]) for w in order}
    total_rows = sum(len(p) for p in packed.values())
    width = LANE_LABEL_W + PLOT_W + 2 * MARGIN
    height = AXIS_H + total_rows * BAR_PITCH + len(order) * 6 + MARGIN
    out = [
        f'<svg id="gantt" role="img" aria-label="timeline of {len(ran)} steps on '
        f'{len(order)} workers" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f5f5f5"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" stroke-width="2"/></pattern></defs>',
        '<g class="axis">',
    ]
    step = _nice_step(t1 - t0)
    k = 0
    while k * step <= (t1 - t0) + 1e-9:
        x = LANE_LABEL_W + k * step * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{AXIS_H - 6}" x2="{x:.1f}" y2="{height - MARGIN}"/>'
            f'<text x="{x + 2:.1f}" y="{AXIS_H - 10}">+{e(fmt_duration(k * step))}</text>'
        )
        k += 1
    out.append("</g>")
    y = float(AXIS_H)
    for w in order:
        rows = packed[w]
        lane_h = len(rows) * BAR_PITCH
        label = w if len(w) <= 25 else "…" + w[-24:]
        out.append(
            f'<g class="lane" data-worker="{e(w)}"><title>{e(w)}</title>'
            f'<text x="4" y="{y + 12:.0f}">{e(label)}</text>'
        )
        for i, bars in enumerate(rows):
            by = y + i * BAR_PITCH
            for start, end, r in bars:
                x_of = _x_scale(t0, scale)
                if tries[r.name]:
                    out.extend(_attempt_bars(r, tries[r.name], end, by, x_of, index[r.name]))
                    continue
                bx, bw = x_of(start), max(1.0, (end - start) * scale)
                tip = f"{r.name} — {r.status}, {fmt_duration(max(0.0, end - start))}"
                if r.attempts and r.attempts > 1:
                    tip += f", {r.attempts} attempts"
                out.append(
                    f'<a href="#row-{index[r.name]}"><rect class="bar st-{e(r.status)}" '
                    f'data-step="{e(r.name)}" x="{bx:.1f}" y="{by:.0f}" width="{bw:.1f}" '
                    f'height="{BAR_H}" rx="2"><title>{e(tip)}</title></rect>'
                    f"{_bar_label(r.name, bx, bw, by)}</a>"
                )
        out.append("</g>")
        y += lane_h + 6
    out.append("</svg>")
    return "".join(out)


def _placed(attempts: Sequence[Attempt]) -> Sequence[Attempt]:
    """The attempts, if each can be placed in time (else the step is drawn as one bar)."""
    return attempts if attempts and all(a.start is not None for a in attempts) else ()


def _first_start(row: StepRow, attempts: Sequence[Attempt]) -> float:
    starts = [a.start for a in attempts if a.start is not None]
    if row.start is not None:
        starts.append(row.start)
    return min(starts) if starts else math.inf


def _x_scale(t0: float, scale: float) -> Callable[[float], float]:
    return lambda t: LANE_LABEL_W + (t - t0) * scale


def _attempt_bars(
    r: StepRow,
    attempts: Sequence[Attempt],
    end: float,
    y: float,
    x_of: Callable[[float], float],
    row_index: int,
) -> list[str]:
    """One labelled bar per attempt (``data-attempt``), and a hatched bar for each wait
    before a retry."""
    e = _esc
    out = []
    for i, a in enumerate(attempts):
        nxt = attempts[i + 1] if i + 1 < len(attempts) else None
        start = a.start if a.start is not None else end
        stop = a.end if a.end is not None else (nxt.start if nxt and nxt.start else end)
        bx, bw = x_of(start), max(1.0, x_of(stop) - x_of(start))
        status = a.status if a.status != "running" else r.status
        label = f"{r.name} #{a.n}" if len(attempts) > 1 or a.n > 1 else r.name
        tip = f"{label} — {status}, {fmt_duration(max(0.0, stop - start))}"
        if a.error:
            tip += f"\n{a.error}"
        out.append(
            f'<a href="#row-{row_index}"><rect class="bar st-{e(status)}" data-step="{e(r.name)}" '
            f'data-attempt="{a.n}" x="{bx:.1f}" y="{y:.0f}" width="{bw:.1f}" height="{BAR_H}" '
            f'rx="2"><title>{e(tip)}</title></rect>{_bar_label(label, bx, bw, y)}</a>'
        )
        if a.delay > 0 and status in ("failed", "timed_out"):
            until = nxt.start if nxt and nxt.start else stop + a.delay
            wx, ww = x_of(stop), max(1.0, x_of(until) - x_of(stop))
            wait = f"{r.name}: waited {fmt_duration(a.delay)} before attempt {a.n + 1}"
            out.append(
                f'<rect class="wait" data-step="{e(r.name)}" data-attempt="{a.n}" '
                f'x="{wx:.1f}" y="{y + 2:.0f}" width="{ww:.1f}" height="{BAR_H - 4}">'
                f"<title>{e(wait)}</title></rect>"
            )
    return out


def _bar_label(text: str, x: float, width: float, y: float) -> str:
    """The bar's name written on it, cut to fit; nothing on a bar too narrow to hold a word."""
    fits = int((width - 6) / 6.2)
    if fits < 6:
        return ""
    shown = text if len(text) <= fits else text[: fits - 1] + "…"
    return f'<text class="bar-label" x="{x + 3:.1f}" y="{y + 11:.0f}">{_esc(shown)}</text>'


def _excerpt(tb: str) -> str:
    lines = tb.rstrip().splitlines()
    cut = len(lines) > TRACEBACK_LINES
    text = "\n".join(lines[-TRACEBACK_LINES:])
    if len(text) > TRACEBACK_CHARS:
        text, cut = text[-TRACEBACK_CHARS:], True
    return ("…\n" if cut else "") + text


def _table_html(report: RunReport, index: Mapping[str, int]) -> str:
    e = _esc
    t0 = report.started
    head = (
        "<tr><th>#</th><th>Step</th><th>Status</th><th>Attempts</th><th>Duration</th>"
        "<th>CPU</th><th>Peak memory</th><th>Worker</th><th>Start</th><th>Reason</th>"
        "<th>Error</th></tr>"
    )
    out = ['<table id="step-table"><thead>', head, "</thead><tbody>"]
    for r in report.steps:
        i = index[r.name]
        err = ""
        if r.error_type or r.error_message:
            msg = r.error_message
            short = msg if len(msg) <= MESSAGE_CHARS else msg[: MESSAGE_CHARS - 1] + "…"
            err = (
                f'<span class="etype">{e(r.error_type)}</span>: '
                f'<span class="emsg">{e(short)}</span>'
            )
            if r.traceback:
                err += (
                    "<details><summary>traceback</summary>"
                    f"<pre>{e(_excerpt(r.traceback))}</pre></details>"
                )
        if r.retried:
            tries = "".join(
                f"<li>attempt {n}: {e(text)}; retried after {delay:.2f}s</li>"
                for n, text, delay in r.retried
            )
            err += f'<details class="retries"><summary>{len(r.retried)} retried attempt(s)'
            err += f"</summary><ul>{tries}</ul></details>"
        start = ""
        if r.start is not None:
            start = (
                f"+{fmt_duration(max(0.0, r.start - t0))}"
                if t0 is not None and r.start >= t0
                else _fmt_time(r.start)
            )
        reason = r.reason + (" (recorded in an earlier session)" if r.earlier else "")
        classes = [c for c, on in (("earlier", r.earlier), ("instance", r.parent)) if on]
        cls = f' class="{" ".join(classes)}"' if classes else ""
        if r.parent is not None:
            cls += f' data-parent="{e(r.parent)}"'
        out.append(
            f'<tr id="row-{i}"{cls} data-step="{e(r.name)}" data-status="{e(r.status)}">'
            f'<td class="num">{i + 1}</td><td class="name">{e(r.name)}</td>'
            f'<td><span class="badge st-{e(r.status)}">{e(r.status)}</span></td>'
            f'<td class="num attempts">{"" if r.attempts is None else r.attempts}</td>'
            f'<td class="num dur">{"" if r.duration is None else e(fmt_duration(r.duration))}</td>'
            f'<td class="num cpu">{"" if r.cpu is None else e(fmt_duration(r.cpu))}</td>'
            f'<td class="num mem">{_fmt_bytes(r.peak_rss)}</td>'
            f'<td class="worker">{e(r.worker or "")}</td><td class="num start">{e(start)}</td>'
            f'<td class="reason">{e(reason)}</td><td class="error">{err}</td></tr>'
        )
    out.append("</tbody></table>")
    return "".join(out)


# Filter the table (search box, status chips, or "#status=failed" / "#filter=text" in the URL),
# and toggle the graph between natural size and fit-to-width. Sets body[data-ready] when done.
_JS = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll('#step-table tbody tr'));
  var box = document.getElementById('filter'), shown = document.getElementById('shown');
  var status = '';
  function apply() {
    var q = box.value.trim().toLowerCase(), n = 0;
    rows.forEach(function (tr) {
      var ok = (!status || tr.dataset.status === status) &&
               (!q || tr.textContent.toLowerCase().indexOf(q) >= 0);
      tr.hidden = !ok;
      if (ok) { n++; }
    });
    shown.textContent = n + ' of ' + rows.length + ' steps shown';
  }
  function fromHash() {
    var h = decodeURIComponent(location.hash.slice(1));
    if (h.indexOf('status=') === 0) { status = h.slice(7); apply(); }
    else if (h.indexOf('filter=') === 0) { box.value = h.slice(7); apply(); }
  }
  box.addEventListener('input', apply);
  document.querySelectorAll('#counts button').forEach(function (b) {
    b.addEventListener('click', function () { status = b.dataset.status; apply(); });
  });
  document.getElementById('fit').addEventListener('click', function () {
    document.getElementById('dag').classList.toggle('fit');
  });
  window.addEventListener('hashchange', fromHash);
  apply();
  fromHash();
  document.body.dataset.ready = '1';
})();
"""


def _fmt_bytes(n: int | None) -> str:
    """Peak memory for the table; empty where it was not measured (threads share a process)."""
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return ""
