"""The dashboard's HTML pages: the runs list, a run, a step.

Pages are rendered on the server from the same data model as ``flowkit report`` (the graph is the
report's SVG); the run page then keeps itself up to date from the run's event stream
(``static/run.js``). Every string that comes from a flow or a journal is escaped here, or set as
text (never as markup) by the scripts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from ..report import STATUSES, RunReport, StepRow, graph_svg
from ..report.trace import user_frames
from ..result import fmt_duration
from .catalog import RunSummary

__all__ = ["page", "run_page", "runs_page", "step_page"]

TRACEBACK_CHARS = 20_000


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t is not None else "—"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "none"


def _json_script(element_id: str, data: Any) -> str:
    # "</script>" or "<!--" inside a string must not end the element: escape every "<"
    text = orjson.dumps(data).decode().replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def run_url(flow_dir: str, run_dir: str) -> str:
    return f"/runs/{quote(flow_dir, safe='')}/{quote(run_dir, safe='')}"


def page(title: str, body: str, *, scripts: Sequence[str] = ()) -> str:
    """A whole HTML document around ``body``."""
    tags = "".join(f'<script src="/static/{_e(s)}" defer></script>' for s in scripts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        '<link rel="stylesheet" href="/static/report.css">'
        f'<link rel="stylesheet" href="/static/serve.css">{tags}</head>'
        f'<body><nav><a href="/">flowkit runs</a></nav>{body}</body></html>'
    )


# --- the runs list ------------------------------------------------------------------------------


def runs_page(
    runs: Sequence[RunSummary],
    total: int,
    *,
    root: str,
    q: str,
    status: str,
    flow: str,
    flows: Sequence[str],
    page_no: int,
    pages: int,
) -> str:
    """Every run in the folder (one page of them), newest first, with the filter form."""
    status_opts = "".join(
        f'<option value="{_e(s)}"{" selected" if s == status else ""}>{_e(s or "any status")}'
        "</option>"
        for s in ("", *STATUSES, "cancelled")
    )
    flow_opts = "".join(
        f'<option value="{_e(f)}"{" selected" if f == flow else ""}>{_e(f or "all flows")}</option>'
        for f in ("", *flows)
    )
    form = (
        '<form id="run-filter" method="get" action="/">'
        f'<input type="search" name="q" value="{_e(q)}" placeholder="flow, run id, parameter" '
        'size="32" aria-label="filter runs"> '
        f'<select name="status" aria-label="status">{status_opts}</select> '
        f'<select name="flow" aria-label="flow">{flow_opts}</select> '
        '<button type="submit">Filter</button></form>'
    )
    rows = []
    for r in runs:
        counts = " ".join(
            f'<span class="badge st-{_e(s)}">{n} {_e(s)}</span>' for s, n in r.counts.items()
        )
        dur = fmt_duration(r.duration) if r.duration is not None else "—"
        rows.append(
            f'<tr data-flow="{_e(r.flow)}" data-run="{_e(r.run_id)}" data-status="{_e(r.status)}">'
            f'<td class="name">{_e(r.flow)}</td>'
            f'<td><a class="run-link" href="{_e(run_url(r.flow_dir, r.run_dir))}">'
            f"{_e(r.run_id)}</a></td>"
            f'<td><span class="badge st-{_e(_known(r.status))}">{_e(r.status)}</span></td>'
            f'<td class="num">{_e(_when(r.started))}</td><td class="num">{_e(dur)}</td>'
            f'<td class="counts">{counts}</td><td class="params">{_e(_params(r.params))}</td></tr>'
        )
    if not rows:
        rows.append(
            '<tr><td colspan="7" class="empty">No run matches.</td></tr>'
            if total
            else f'<tr><td colspan="7" class="empty">No runs in {_e(root)} yet: run a flow '
            "(<code>flowkit run pipeline:flow</code>) with this state folder.</td></tr>"
        )
    nav = []
    base = {"q": q, "status": status, "flow": flow}
    if page_no > 1:
        nav.append(
            f'<a rel="prev" href="/?{_e(urlencode({**base, "page": page_no - 1}))}">newer</a>'
        )
    nav.append(f"page {page_no} of {pages}")
    if page_no < pages:
        nav.append(
            f'<a rel="next" href="/?{_e(urlencode({**base, "page": page_no + 1}))}">older</a>'
        )
    body = (
        f'<header><h1>Runs</h1><p class="hint">State folder <code>{_e(root)}</code>: '
        f'<span id="run-total">{total}</span> runs; this page follows new runs live.</p></header>'
        f"{form}"
        '<table id="runs"><thead><tr><th>Flow</th><th>Run</th><th>Status</th><th>Started</th>'
        "<th>Duration</th><th>Steps</th><th>Parameters</th></tr></thead><tbody>"
        + "".join(rows)
        + f'</tbody></table><p class="pager">{" · ".join(nav)}</p>'
    )
    return page("flowkit · runs", body, scripts=["runs.js"])


def _known(status: str) -> str:
    """The status's colour class (``cancelled`` has its own in serve.css)."""
    return status if status in STATUSES or status == "cancelled" else "pending"


# --- a run --------------------------------------------------------------------------------------


def run_page(
    report: RunReport, *, flow_dir: str, run_dir: str, actions: bool, token_note: str = ""
) -> str:
    """A run: summary, graph, per-attempt timeline, step table and a side panel (run.js)."""
    url = run_url(flow_dir, run_dir)
    config = {
        "events": f"{url}/events",
        "log": f"{url}/log",
        "step": f"{url}/step",
        "cancel": f"{url}/cancel" if actions else None,
    }
    cancel = '<button type="button" id="cancel" hidden>Cancel this run</button>' if actions else ""
    summary = (
        f'<header><h1>Flow <span id="flow-name">{_e(report.flow)}</span> '
        f'<span id="run-status" class="badge st-{_e(_known(report.status))}">'
        f"{_e(report.status)}</span> {cancel}</h1>"
        '<dl class="summary">'
        f'<dt>Run id</dt><dd id="run-id">{_e(report.run_id)}</dd>'
        f'<dt>Parameters</dt><dd id="params">{_e(_params(report.params))}</dd>'
        f'<dt>Started</dt><dd id="started">{_e(_when(report.started))}</dd>'
        '<dt>Duration</dt><dd id="duration">—</dd>'
        f'<dt>Sessions</dt><dd id="sessions">{report.sessions}</dd>'
        f'<dt>Steps</dt><dd id="step-count">{len(report.steps)}</dd>'
        '</dl><div class="counts" id="counts"></div>'
        '<p id="live" class="hint">connecting…</p><p id="damaged" class="hint" hidden></p>'
        "</header>"
    )
    body = (
        f"{summary}"
        '<section id="graph"><h2>Graph</h2><p class="hint">Steps by tier, coloured by status; '
        "click one for its attempts, error and log.</p>"
        f'<div class="scroll" id="graph-box">{graph_svg(report.steps)}</div></section>'
        '<section id="timeline"><h2>Timeline</h2><p class="hint">One bar per attempt; a '
        "hatched gap is the wait before a retry.</p>"
        '<div class="scroll" id="timeline-box"></div></section>'
        '<section id="steps"><h2>Steps</h2><p><input id="filter" type="search" '
        'placeholder="Filter by name, status, reason or error" size="44" aria-label="filter '
        'steps"> <span id="shown"></span> <button type="button" id="prev">‹</button> '
        '<span id="page"></span> <button type="button" id="next">›</button></p>'
        '<table id="step-table"><thead><tr><th>#</th><th>Step</th><th>Status</th>'
        "<th>Attempts</th><th>Duration</th><th>Worker</th><th>Reason</th><th>Error</th></tr>"
        "</thead><tbody></tbody></table></section>"
        '<aside id="panel" hidden><button type="button" id="panel-close" aria-label="close">'
        '×</button><h2 id="panel-title"></h2><p><a id="panel-link" href="#">step page</a></p>'
        '<dl class="summary" id="panel-facts"></dl><h3>Attempts</h3><ol id="panel-attempts">'
        '</ol><div id="panel-error"></div><h3>Log</h3><pre id="panel-log"></pre></aside>'
        f"{_json_script('config', config)}"
        f"{token_note}"
    )
    return page(f"flowkit · {report.flow} · {report.run_id}", body, scripts=["run.js"])


# --- a step -------------------------------------------------------------------------------------


def step_page(
    row: StepRow,
    bars: Sequence[Mapping[str, Any]],
    record: Mapping[str, Any] | None,
    log: str,
    log_cut: bool,
    *,
    flow: str,
    run_id: str,
    flow_dir: str,
    run_dir: str,
) -> str:
    """One step: status, reason (what ``flowkit explain`` says of the recorded run), cache key,
    attempts, error with its traceback, and its log."""
    rec = record or {}
    facts = [
        ("Status", f'<span class="badge st-{_e(_known(row.status))}">{_e(row.status)}</span>'),
        ("Reason", _e(row.reason or "—")),
        ("Attempts", _e(row.attempts if row.attempts is not None else "—")),
        ("Duration", _e(fmt_duration(row.duration) if row.duration is not None else "—")),
        ("Worker", _e(row.worker or "—")),
        ("Cache key", f"<code>{_e(rec.get('key', '—'))}</code>"),
        ("Code hash", f"<code>{_e(rec.get('code', '—'))}</code>"),
        ("Input hashes", f"<code>{_e(_inputs(rec.get('in')))}</code>"),
    ]
    if row.parent:
        facts.insert(0, ("Instance of", _e(row.parent)))
    deps = ", ".join((*row.data_deps, *(f"{d} (order)" for d in row.order_deps)))
    if deps:
        facts.append(("Depends on", _e(deps)))
    attempts = "".join(
        f'<tr class="attempt" data-attempt="{_e(b.get("n"))}"><td class="num">{_e(b.get("n"))}</td>'
        f'<td><span class="badge st-{_e(_known(str(b.get("status"))))}">'
        f"{_e(b.get('status'))}</span></td>"
        f'<td class="num">{_e(_when(b.get("start")))}</td>'
        f'<td class="num">{_e(_span(b))}</td>'
        f'<td class="num">{_e(_delay(b))}</td>'
        f'<td class="worker">{_e(b.get("worker") or "")}</td>'
        f'<td class="error">{_e(b.get("error") or "")}</td></tr>'
        for b in bars
    )
    error = ""
    if row.error_type or row.error_message:
        error = (
            f'<h2>Error</h2><p class="error"><span class="etype">{_e(row.error_type)}</span>: '
            f"{_e(row.error_message)}</p>"
        )
        if row.traceback:
            full = row.traceback[-TRACEBACK_CHARS:]
            mine = user_frames(full)
            error += f'<pre id="traceback">{_e(mine)}</pre>'
            if mine != full.rstrip("\n"):
                error += (
                    '<details id="full-traceback"><summary>Full traceback (with the frames of '
                    f"flowkit and the standard library)</summary><pre>{_e(full)}</pre></details>"
                )
    body = (
        f'<header><h1>Step <span id="step-name">{_e(row.name)}</span></h1>'
        f'<p>of run <a href="{_e(run_url(flow_dir, run_dir))}">{_e(run_id)}</a> '
        f"(flow {_e(flow)})</p></header>"
        '<dl class="summary" id="facts">'
        + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
        + "</dl><h2>Attempts</h2>"
        + (
            '<table id="attempts"><thead><tr><th>#</th><th>Outcome</th><th>Started</th>'
            "<th>Took</th><th>Then waited</th><th>Worker</th><th>Error</th></tr></thead>"
            f"<tbody>{attempts}</tbody></table>"
            if attempts
            else '<p class="hint">No attempt in the latest session.</p>'
        )
        + error
        + "<h2>Log</h2>"
        + ('<p class="hint">Only the end of the log is shown.</p>' if log_cut else "")
        + (
            f'<pre id="log">{_e(log)}</pre>'
            if log
            else '<p class="hint" id="log">It printed and logged nothing.</p>'
        )
    )
    return page(f"flowkit · {run_id} · {row.name}", body)


def _delay(bar: Mapping[str, Any]) -> str:
    delay = bar.get("delay")
    return f"{delay:.2f}s" if isinstance(delay, (int, float)) and delay else ""


def _span(bar: Mapping[str, Any]) -> str:
    start, end = bar.get("start"), bar.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return fmt_duration(max(0.0, end - start))
    return "—"


def _inputs(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return "—" if value is None else str(value)
