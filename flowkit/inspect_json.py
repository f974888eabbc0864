"""``--json`` output of the inspection commands (``status``, ``runs``, ``explain``, ``graph``):
the same facts as their text, as one JSON document on stdout for scripts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from .graph import FlowGraph
from .result import ErrorInfo
from .resume import Decision, PlannedStep
from .stepview import StepView
from .store import RunStore

__all__ = ["explain_json", "graph_json", "print_json", "runs_json", "status_json"]


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON (keys in a stable order)."""
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode())


def status_json(
    flow: str,
    store: RunStore,
    status: str,
    views: Sequence[tuple[StepView, Sequence[StepView]]],
    cells: Callable[[StepView], tuple[str, str, str, str]],
) -> dict[str, Any]:
    """``status --json``: the run's status and one entry per step (fan-out instances after
    their step, with ``instance_of``); ``cells`` gives a step's state, attempts and detail."""
    steps: list[dict[str, Any]] = []
    for view, instances in views:
        for v in (view, *instances):
            st, _, _, detail = cells(v)
            steps.append(
                {
                    "name": v.name,
                    "instance_of": v.parent,
                    "state": st,
                    "attempts": v.attempts,
                    "duration_s": None if v.duration is None else round(v.duration, 6),
                    "detail": detail or None,
                }
            )
    return {"flow": flow, "run_id": store.dir.name, "status": status, "steps": steps}


def runs_json(runs: Sequence[tuple[RunStore, Mapping[str, Any], str]]) -> list[dict[str, Any]]:
    """``runs --json``: one entry per stored run (``status`` is ``running`` while held)."""
    return [
        {
            "run_id": store.dir.name,
            "status": status,
            "started": info.get("started"),
            "last_active": info.get("last"),
            "counts": info.get("counts", {}),
            "params": info.get("params", {}),
            **({"size": info["size"]} if "size" in info else {}),
            **({"error": info["error"]} if "error" in info else {}),
        }
        for store, info, status in runs
    ]


def explain_json(step: PlannedStep, name: str, last: Mapping[str, Any] | None) -> dict[str, Any]:
    """``explain --json``: the decision (``run``, ``cached``, ``skip``, ...) and its reason."""
    error = None
    if last is not None and last.get("error"):
        err = ErrorInfo.from_json(last["error"])
        error = {"message": str(err), "traceback": err.traceback}
    decision = "run" if step.decision is Decision.RUN else step.decision.value
    return {"step": name, "decision": decision, "reason": step.reason, "last_error": error}


def graph_json(graph: FlowGraph, statuses: Mapping[str, str]) -> dict[str, Any]:
    """``graph --json``: nodes in run order (with tier, upstreams and status) and edges."""
    tier_of = {n: i for i, tier in enumerate(graph.tiers) for n in tier}
    nodes = [
        {
            "name": name,
            "tier": tier_of.get(name),
            "upstream": list(graph.nodes[name].upstream),
            "status": statuses.get(name),
        }
        for name in graph.order
    ]
    edges = [[up, name] for name in graph.order for up in graph.nodes[name].upstream]
    return {"flow": graph.flow, "nodes": nodes, "edges": edges}
