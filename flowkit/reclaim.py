"""Reclaiming disk: the output files of a run that its latest state no longer uses.

A run's ``outputs/`` folder keeps a side file for each step whose last record points at one.
Files nothing points at any more are *orphans*: the outputs of fan-out instances the latest
gather no longer made (a value removed from a grid or a ``map_over`` list), of steps that left
the flow, side files a step replaced by an inline value, and temporary files of a killed write.
``flowkit clean --orphans`` deletes them (under the run's lock). Records of older journals that
cannot tell which instances were gathered keep their files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .graph import FlowGraph
from .store import LoadedState, RunStore

__all__ = ["Orphans", "find_orphans"]


@dataclass(frozen=True, slots=True)
class Orphans:
    """The orphaned files of one run, and their total size in bytes."""

    files: tuple[Path, ...]
    size: int

    def delete(self) -> int:
        """Delete the files; returns how many bytes were freed."""
        freed = 0
        for path in self.files:
            try:
                n = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            freed += n
        return freed


def find_orphans(graph: FlowGraph, store: RunStore, state: LoadedState) -> Orphans:
    """The files under ``store.outputs`` that no current record of ``state`` refers to."""
    keep: set[Path] = set()
    for name, rec in state.steps.items():
        if not _in_use(name, graph, state.steps):
            continue
        ref = rec.get("ref")
        if isinstance(ref, str):
            keep.add(store.outputs / ref)
        ctx = rec.get("ctx")
        if isinstance(ctx, Mapping) and isinstance(ctx.get("ref"), str):
            keep.add(store.ctx_outputs / str(ctx["ref"]))
    files: list[Path] = []
    size = 0
    for root, _, names in os.walk(store.outputs):
        for n in names:
            path = Path(root) / n
            if path not in keep:
                files.append(path)
                size += _size(path)
    return Orphans(tuple(sorted(files)), size)


def _in_use(name: str, graph: FlowGraph, steps: Mapping[str, Mapping[str, Any]]) -> bool:
    if name in graph.nodes:
        return True
    base, bracket, _ = name.partition("[")
    if not bracket or base not in graph.nodes or not name.endswith("]"):
        return False  # a step that is no longer in the flow
    made = (steps.get(base) or {}).get("of")
    if not isinstance(made, list):
        return True  # not gathered since, or an older journal: cannot tell, keep it
    return name in made


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
