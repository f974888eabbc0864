"""The report's graph: steps by topological tier as an inline SVG.

A fan-out step is one node (its instances are counted by status on it). A big graph with
failures is drawn twice: first only the failed steps and the steps upstream of them (where to
look), then the whole graph, behind a toggle.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from html import escape

from ..result import fmt_duration
from ..stepview import FAILURES
from .model import StepRow

__all__ = ["FOCUS_DEPTH", "FOCUS_OVER", "failure_paths", "graph_svg", "svg", "upstream_count"]

# Layout (pixels).
NODE_W, NODE_H = 168, 24
ROW_PITCH = 32
SUB_GAP, TIER_GAP, MARGIN = 16, 56, 16
MAX_ROWS = 40  # a tier with more steps wraps into several sub-columns
LABEL_CHARS = 23
MAX_EDGES = 20_000  # beyond this the edges are omitted (they would be an unreadable mesh)

#: A graph of more nodes than this, with failures, opens on the failures and their upstreams,
#: up to this many dependencies away (so that the drawing fits a screen's width).
FOCUS_OVER, FOCUS_DEPTH = 60, 3

#: Short signs for instance counts on a fan-out node.
_SIGNS = {
    "succeeded": "✓",
    "cached": "=",
    "failed": "✗",
    "timed_out": "⏱",
    "upstream_failed": "↑✗",
    "skipped": "–",
    "running": "▶",
    "retrying": "↻",
    "interrupted": "■",
    "pending": "…",
}


def _esc(value: object) -> str:
    return escape(str(value), quote=True)


def failure_paths(rows: Sequence[StepRow], depth: int = FOCUS_DEPTH) -> list[StepRow]:
    """The graph's failed steps (a fan-out step whose instances failed counts) and the steps
    up to ``depth`` dependencies upstream of them, in the rows' order. Each is given as its
    ``tier`` its column in the focus drawing: the failed steps in the last one, and each step
    upstream one column further left per dependency (its nearest failure decides)."""
    nodes = {r.name: r for r in rows if r.parent is None}
    bad = [n for n in dict.fromkeys(r.parent or r.name for r in rows if r.status in FAILURES)]
    dist: dict[str, int] = {n: 0 for n in bad if n in nodes}
    frontier = list(dist)
    for d in range(1, depth + 1):
        nxt = []
        for n in frontier:
            for up in (*nodes[n].data_deps, *nodes[n].order_deps):
                if up in nodes and up not in dist:
                    dist[up] = d
                    nxt.append(up)
        frontier = nxt
    deepest = max(dist.values(), default=0)
    return [replace(r, tier=deepest - dist[r.name]) for r in rows if r.name in dist]


def upstream_count(rows: Sequence[StepRow]) -> int:
    """How many steps are upstream of the failed ones in all (however far)."""
    nodes = {r.name: r for r in rows if r.parent is None}
    todo = list(dict.fromkeys(r.parent or r.name for r in rows if r.status in FAILURES))
    seen: set[str] = set(todo)
    while todo:
        n = todo.pop()
        for up in (*nodes[n].data_deps, *nodes[n].order_deps) if n in nodes else ():
            if up in nodes and up not in seen:
                seen.add(up)
                todo.append(up)
    failed = {r.parent or r.name for r in rows if r.status in FAILURES}
    return len(seen - failed)


def _layout(
    rows: Sequence[StepRow], compact: bool
) -> tuple[dict[str, tuple[float, float]], float, float]:
    """Top-left corner of each node, and the drawing's width and height.

    Tiers are columns (``compact``: only tiers that have nodes, in order); within a tier, steps
    are ordered by the mean position of their upstreams (fewer crossings), and a tier taller
    than MAX_ROWS wraps into sub-columns.
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
            top = MARGIN + (height_rows - len(chunk)) * ROW_PITCH / 2 if not compact else MARGIN
            for i, n in enumerate(chunk):
                pos[n] = (x, top + i * ROW_PITCH)
            x += NODE_W + (SUB_GAP if c < cols - 1 else TIER_GAP)
    width = x - TIER_GAP + MARGIN if ordered else 2 * MARGIN
    return pos, width, float(height)


def graph_svg(rows: Sequence[StepRow]) -> str:
    """The graph as an inline SVG: one ``g.node`` per step (``data-step``, ``data-status``, class
    ``st-<status>``) linking to ``#row-<i>``, its row's position in ``rows``."""
    return svg(rows, {r.name: i for i, r in enumerate(rows)})


def svg(
    all_rows: Sequence[StepRow],
    index: Mapping[str, int],
    *,
    only: Sequence[StepRow] | None = None,
    svg_id: str = "dag",
) -> str:
    """The graph of ``all_rows`` (or of the nodes ``only``, packed to the top-left), instances
    counted on their step's node."""
    e = _esc
    by_parent: dict[str, Counter[str]] = {}
    for r in all_rows:
        if r.parent is not None:
            by_parent.setdefault(r.parent, Counter())[r.status] += 1
    rows = list(only) if only is not None else [r for r in all_rows if r.parent is None]
    pos, width, height = _layout(rows, compact=only is not None)
    n_edges = sum(len(r.data_deps) + len(r.order_deps) for r in rows)
    out = [
        f'<svg id="{svg_id}" class="dag" role="img" aria-label="graph of {len(rows)} steps" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">',
        f'<defs><marker id="{svg_id}-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" '
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
                        f'{x2:.0f},{y2:.0f}" marker-end="url(#{svg_id}-arrow)"/>'
                    )
        out.append("</g>")
    else:
        out.append(
            f'<text x="{MARGIN}" y="{MARGIN / 2 + 4:.0f}" font-size="11" fill="#c62828">'
            f"{n_edges} edges: too many to draw</text>"
        )
    out.append('<g class="nodes">')
    for r in rows:
        out.append(_node(r, pos[r.name], index[r.name], by_parent.get(r.name)))
    out.append("</g></svg>")
    return "".join(out)


def _node(r: StepRow, at: tuple[float, float], row_index: int, fanned: Counter[str] | None) -> str:
    e = _esc
    x, y = at
    label = r.name
    counts = ""
    if fanned:
        counts = " ".join(f"{n}{_SIGNS.get(s, s)}" for s, n in _ordered(fanned))
        room = max(6, LABEL_CHARS - len(counts) - 1)
        label = label if len(label) <= room else label[: room - 1] + "…"
    elif len(label) > LABEL_CHARS:
        label = label[: LABEL_CHARS - 1] + "…"
    tip = f"{r.name} — {r.status}"
    if r.duration is not None:
        tip += f", {fmt_duration(r.duration)}"
    if r.attempts and r.attempts > 1:
        tip += f", {r.attempts} attempts"
    if fanned:
        total = sum(fanned.values())
        tip += f"\n{total} instances: " + ", ".join(f"{n} {s}" for s, n in _ordered(fanned))
    if r.reason:
        tip += f"\n{r.reason}"
    stack = (
        f'<rect class="stack" x="3" y="-3" width="{NODE_W}" height="{NODE_H}" rx="4"/>'
        if fanned
        else ""
    )
    count_text = (
        f'<text class="counts" x="{NODE_W - 5}" y="16" text-anchor="end">{e(counts)}</text>'
        if counts
        else ""
    )
    return (
        f'<a href="#row-{row_index}"><g class="node st-{e(r.status)}" '
        f'data-step="{e(r.name)}" data-status="{e(r.status)}" '
        f'transform="translate({x:.0f},{y:.0f})"><title>{e(tip)}</title>{stack}'
        f'<rect width="{NODE_W}" height="{NODE_H}" rx="4"/>'
        f'<text x="6" y="16">{e(label)}</text>{count_text}</g></a>'
    )


def _ordered(c: Counter[str]) -> list[tuple[str, int]]:
    rank = {s: i for i, s in enumerate(_SIGNS)}
    return sorted(c.items(), key=lambda kv: (rank.get(kv[0], 99), kv[0]))
