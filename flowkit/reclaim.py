"""Reclaiming disk: stored outputs that the latest state of the flow's runs no longer uses.

Outputs are objects of the flow's object store (:mod:`flowkit.objects`), shared by its runs. An
object is *in use* while the latest state of some run of the flow (or the state ``--fresh`` set
aside in ``<run>.previous``) has a record that names it, for a step still in the flow; a fan-out
instance counts only if the latest gather made it. The rest are unused: the outputs of instances
no longer made (a value removed from a grid or a ``map_over`` list), of steps that left the flow,
of runs that were deleted, of steps that re-ran to another value, and temporary files of a killed
write. ``flowkit clean --orphans`` deletes them. It deletes no object while a run of the flow is
running (whose records may not be on disk yet), none when a run's state cannot be read (what it
uses is unknown), and none written or reused since the sweep began.

Runs written before the object store keep their outputs in their own ``outputs/`` folder:
:func:`find_orphans` finds the files there that the run's latest state no longer names.
Records of older journals that cannot tell which instances were gathered keep their files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .codec import stored_name
from .errors import StateError
from .graph import FlowGraph
from .objects import ObjectStore
from .store import LoadedState, RunStore

__all__ = ["Orphans", "UnusedObjects", "find_orphans", "find_unused_objects", "objects_of"]


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


def objects_of(state: LoadedState, graph: FlowGraph | None = None) -> dict[str, str]:
    """The objects the records of ``state`` name (``graph``: only those of steps still in use
    in it), each with the step whose record names it."""
    found: dict[str, str] = {}
    for name, rec in state.steps.items():
        if graph is not None and not _in_use(name, graph, state.steps):
            continue
        for r in (rec, rec.get("ctx")):
            if isinstance(r, Mapping) and "obj" in r:
                obj = stored_name(r)
                if obj is not None:
                    found.setdefault(obj, name)
    return found


@dataclass(frozen=True, slots=True)
class UnusedObjects:
    """The objects of a flow no run uses (``files``, ``size`` bytes), each with what last named
    it (``"step in run"``, or ``""``); ``held``: why none may be deleted now (or None)."""

    files: tuple[tuple[Path, str], ...]
    size: int
    held: str | None = None

    def delete(self, since: float) -> tuple[int, int]:
        """Delete the objects not written or reused since ``since`` (a time); returns how many
        were deleted and the bytes freed."""
        count = freed = 0
        for path, _ in self.files:
            try:
                st = path.stat()
                if st.st_mtime >= since:
                    continue  # a run wrote or reused it meanwhile
                path.unlink()
            except FileNotFoundError:
                continue
            count += 1
            freed += st.st_size
            for folder in (path.parent, path.parent.parent):  # empty shard, empty store
                try:
                    folder.rmdir()
                except OSError:
                    break
        return count, freed


def run_folders(flow_dir: Path) -> list[Path]:
    """The folders of a flow's runs that hold a journal (``.previous`` ones included)."""
    if not flow_dir.is_dir():
        return []
    return sorted(d for d in flow_dir.iterdir() if d.is_dir() and (d / "journal.jsonl").exists())


def find_unused_objects(graph: FlowGraph, root: Path, flow: str) -> UnusedObjects:
    """The objects of flow ``flow`` (under the state folder ``root``) that no run uses."""
    probe = RunStore(root, flow, "_")
    objects: ObjectStore = probe.objects
    flow_dir = probe.dir.parent
    named: dict[str, str] = {}  # an object -> the step (and run) whose record last named it
    in_use: set[str] = set()
    for folder in run_folders(flow_dir):
        store = RunStore(root, flow, folder.name)
        if not folder.name.endswith(".previous"):
            holder = store.holder()
            if holder is not None:
                return UnusedObjects((), 0, f"run {folder.name} is running ({holder})")
        try:
            state = store.load()
        except StateError as exc:
            return UnusedObjects((), 0, f"the state of run {folder.name} cannot be read: {exc}")
        for obj, step in objects_of(state).items():
            named[obj] = f"{step} in {folder.name}"
        in_use.update(objects_of(state, graph))
    files: list[tuple[Path, str]] = []
    size = 0
    for name, path in objects.names():
        if name not in in_use:
            files.append((path, named.get(name, "")))
            size += _size(path)
    return UnusedObjects(tuple(files), size)


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
