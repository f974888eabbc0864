"""The report's timeline: the steps executed in the latest session, one lane per worker, one
labelled bar per attempt and a hatched bar for each wait before a retry."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape

from ..attempts import Attempt
from ..result import fmt_duration
from .model import RunReport, StepRow

__all__ = ["timeline_svg"]

# Layout (pixels).
LANE_LABEL_W, PLOT_W, BAR_H, BAR_PITCH, AXIS_H, MARGIN = 170, 960, 14, 18, 26, 16
#: The lane of steps whose worker the journal does not name.
NO_WORKER = "(worker not recorded)"


def _esc(value: object) -> str:
    return escape(str(value), quote=True)


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target if span > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return float(m * mag)
    return float(10 * mag)


#: What a lane holds: a step's span there (start, end), its row, and which of its attempts ran
#: there (indices; none: the step is drawn as one bar).
Bar = tuple[float, float, StepRow, tuple[int, ...]]


def _pack(bars: Iterable[Bar]) -> list[list[Bar]]:
    """Greedy interval packing: bars that overlap in time go on separate rows of a lane."""
    rows: list[list[Bar]] = []
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


def timeline_svg(report: RunReport, index: Mapping[str, int]) -> str:
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
    lanes: dict[str, list[Bar]] = {}
    for r in ran:
        end = r.end if r.end is not None else fallback_end
        if not tries[r.name]:
            bar = (_first_start(r, ()), end, r, ())
            lanes.setdefault(r.worker or NO_WORKER, []).append(bar)
            continue
        for worker, group in _by_worker(r, tries[r.name], end):
            lanes.setdefault(worker, []).append(group)
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
            for start, end, r, which in bars:
                x_of = _x_scale(t0, scale)
                if which:
                    out.extend(_attempt_bars(r, tries[r.name], which, end, by, x_of, index[r.name]))
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


def _span(attempts: Sequence[Attempt], i: int, end: float) -> tuple[float, float, float]:
    """Start and stop of attempt ``i``, and the end of the wait that follows it."""
    a = attempts[i]
    nxt = attempts[i + 1] if i + 1 < len(attempts) else None
    start = a.start if a.start is not None else end
    stop = a.end if a.end is not None else (nxt.start if nxt and nxt.start else end)
    until = stop
    if a.delay > 0 and a.status in ("failed", "timed_out"):
        until = nxt.start if nxt and nxt.start else stop + a.delay
    return start, stop, max(stop, until)


def _by_worker(r: StepRow, attempts: Sequence[Attempt], end: float) -> list[tuple[str, Bar]]:
    """The step's attempts grouped by the worker each ran on (an attempt the journal does not
    place is put with the step's last worker): one bar group per lane."""
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(attempts):
        groups.setdefault(a.worker or r.worker or NO_WORKER, []).append(i)
    out = []
    for worker, which in groups.items():
        spans = [_span(attempts, i, end) for i in which]
        first, last = min(s[0] for s in spans), max(s[2] for s in spans)
        out.append((worker, (first, last, r, tuple(which))))
    return out


def _attempt_bars(
    r: StepRow,
    attempts: Sequence[Attempt],
    which: Sequence[int],
    end: float,
    y: float,
    x_of: Callable[[float], float],
    row_index: int,
) -> list[str]:
    """One labelled bar per attempt of ``which`` (``data-attempt``), and a hatched bar for
    each wait before a retry."""
    e = _esc
    out = []
    for i in which:
        a = attempts[i]
        nxt = attempts[i + 1] if i + 1 < len(attempts) else None
        start, stop, _ = _span(attempts, i, end)
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
