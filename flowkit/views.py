"""Text, Mermaid and Graphviz renderings of a flow's graph, optionally coloured by status."""

from __future__ import annotations

from collections.abc import Mapping

from .graph import FlowGraph, Node
from .result import shown

__all__ = ["STATUS_COLOURS", "render_graph"]

#: Every status a step can be shown with, in display order, and its colour (graphs, reports).
STATUS_COLOURS: dict[str, str] = {
    "succeeded": "#2e7d32",
    "cached": "#1565c0",
    "failed": "#c62828",
    "timed_out": "#ef6c00",
    "upstream_failed": "#e57373",
    "skipped": "#9e9e9e",
    "running": "#f9a825",
    "retrying": "#fbc02d",
    "interrupted": "#6a1b9a",
    "pending": "#e0e0e0",
}
_COLOURS = {k: v for k, v in STATUS_COLOURS.items() if k not in ("pending", "interrupted")}


def render_graph(graph: FlowGraph, fmt: str, statuses: Mapping[str, str] | None = None) -> str:
    """The graph as ``text`` (tiers with arrows), ``mermaid`` or ``dot``."""
    statuses = statuses or {}
    if fmt == "text":
        lines = []
        for i, tier in enumerate(graph.tiers):
            lines.append(f"tier {i}:")
            for name in tier:
                node = graph.nodes[name]
                ups = ", ".join(shown(u) for u in node.upstream)
                st = f" [{statuses[name]}]" if name in statuses else ""
                lines.append(f"  {shown(name)}{_fan(node)}{st}" + (f"  ← {ups}" if ups else ""))
        return "\n".join(lines)
    ids = {name: f"n{i}" for i, name in enumerate(graph.order)}
    if fmt == "mermaid":
        lines = ["graph TD"]
        for name in graph.order:
            lines.append(f'  {ids[name]}["{shown(name).replace(chr(34), "#quot;")}"]')
        for name in graph.order:
            for dep in graph.nodes[name].data_deps:
                lines.append(f"  {ids[dep]} --> {ids[name]}")
            for dep in graph.nodes[name].order_deps:
                lines.append(f"  {ids[dep]} -.-> {ids[name]}")
        for name, st in statuses.items():
            if name in ids and st in _COLOURS:
                lines.append(f"  style {ids[name]} fill:{_COLOURS[st]},color:#fff")
        return "\n".join(lines)
    if fmt == "dot":
        lines = ["digraph flow {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
        for name in graph.order:
            colour = _COLOURS.get(statuses.get(name, ""))
            extra = (
                f', style="rounded,filled", fillcolor="{colour}", fontcolor=white' if colour else ""
            )
            label = shown(name).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'  {ids[name]} [label="{label}"{extra}];')
        for name in graph.order:
            for dep in graph.nodes[name].data_deps:
                lines.append(f"  {ids[dep]} -> {ids[name]};")
            for dep in graph.nodes[name].order_deps:
                lines.append(f"  {ids[dep]} -> {ids[name]} [style=dashed];")
        lines.append("}")
        return "\n".join(lines)
    raise ValueError(f"unknown graph format {fmt!r}: text, mermaid or dot")


def _fan(node: Node) -> str:
    spec = node.spec
    if spec.map_over:
        return f" (map over {spec.map_over})"
    if spec.matrix:
        return " (matrix " + " × ".join(f"{k}:{len(v)}" for k, v in spec.matrix) + ")"
    return ""
