"""The commands about a flow's stored runs as a whole: ``runs`` (list them, with their size on
disk), ``clean`` (delete them, or only their orphaned output files) and ``logs`` (what a step
printed and logged in a run)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import StateError, StateWriteError, UnknownStepError, UsageError
from .flow import Flow
from .inspect_json import print_json, runs_json
from .keys import safe_name
from .stepview import views_of
from .store import RunStore, check_folder, default_state_dir

__all__ = ["cmd_clean", "cmd_logs", "cmd_runs"]


def _runs_of(flow: Flow, state_dir: str | None) -> list[tuple[RunStore, dict[str, Any]]]:
    root = default_state_dir(state_dir) / safe_name(flow.name)
    check_folder(root)
    out: list[tuple[RunStore, dict[str, Any]]] = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.endswith(".previous") and (d / "journal.jsonl").exists():
                store = RunStore(root.parent, flow.name, d.name)
                out.append((store, _run_info(store, flow.graph().order)))
    return out


def _run_info(store: RunStore, order: Sequence[str]) -> dict[str, Any]:
    """Params, start, last activity, status and step counts of one stored run.

    Read from the end-of-run snapshot when the journal has not grown since (cheap), else by
    replaying the journal: then the counts are of each step's status in the latest session
    (the steps of ``order`` and their fan-out instances), as ``status`` shows them. A run whose
    state cannot be read is reported ``corrupt``.
    """
    journal = store.journal_path
    try:
        snap = store.summary()
        st = journal.stat()
        if (
            snap is not None
            and snap.get("journal_size") == st.st_size
            and snap.get("journal_mtime_ns", st.st_mtime_ns) == st.st_mtime_ns
        ):
            started = snap.get("started")
            return {
                "params": snap.get("params", {}),
                "started": started,
                "last": (started or 0) + float(snap.get("duration_s") or 0),
                "status": snap.get("status", "interrupted"),
                "counts": snap.get("counts", {}),
            }
        state = store.load()
    except StateError as exc:  # listed (and cleanable) even when unreadable
        return {
            "params": {},
            "started": None,
            "last": journal.stat().st_mtime,
            "status": "corrupt",
            "counts": {},
            "error": str(exc),
        }
    first = state.headers[0] if state.headers else {}
    last = state.headers[-1] if state.headers else {}
    counts: dict[str, int] = {}
    for view, instances in views_of(order, state, running=store.holder() is not None):
        for v in (view, *instances):
            counts[v.status] = counts.get(v.status, 0) + 1
    return {
        "params": last.get("params", {}),
        "started": first.get("time"),
        "last": (state.end or {}).get("time") or last.get("time"),
        "status": (state.end or {}).get("status", "interrupted"),
        "counts": counts,
    }


def cmd_runs(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    if params or args.run_id:
        raise UsageError(
            "runs lists every run of the flow; it takes no --param or --run-id (status "
            "shows one run)"
        )
    runs = _runs_of(flow, args.state_dir)
    shared = runs[0][0].objects.size() if runs else 0
    sizes = [_sizes(store) for store, _ in runs]
    if args.json:
        for (_, info), (size, prev) in zip(runs, sizes, strict=True):
            info["size"] = {"run": size, "previous": prev, "flow_objects": shared}
        print_json(
            runs_json([(st, i, "running" if st.holder() else i["status"]) for st, i in runs])
        )
        return 0
    if not runs:
        print(f"flow {flow.name} has no runs in {default_state_dir(args.state_dir)}")
        return 0
    print(f"{'RUN ID':<32} {'STATUS':<12} {'LAST ACTIVE':<20} {'SIZE':>9} {'STEPS':<28} PARAMS")
    total = shared
    for (store, info), (size, prev) in zip(runs, sizes, strict=True):
        holder = store.holder()
        st = "running" if holder else info["status"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["last"] or 0))
        counts = ", ".join(f"{v} {k}" for k, v in sorted(info["counts"].items()))
        previous = store.dir.with_name(store.dir.name + ".previous")
        total += _disk_size(store.dir) + _disk_size(previous)  # (objects: counted once)
        extra = f" (+{_fmt_size(prev)} in {store.dir.name}.previous)" if prev else ""
        print(
            f"{store.dir.name:<32} {st:<12} {when:<20} {_fmt_size(size):>9} {counts:<28} "
            f"{info['params']}{extra}"
        )
    print(
        f"{len(runs)} run(s), {_fmt_size(total)} on disk "
        f"(outputs stored once for all runs: {_fmt_size(shared)})"
    )
    return 0


def _sizes(store: RunStore) -> tuple[int, int]:
    """Bytes of a run (its folder and the objects its latest state names) and of its
    ``.previous`` (its folder and the objects only it names); objects shared by both count in
    the run's size."""
    from .reclaim import objects_of

    def named(folder: Path) -> dict[str, str]:
        if not (folder / "journal.jsonl").exists():
            return {}
        try:
            return objects_of(RunStore(store.root, store.dir.parent.name, folder.name).load())
        except StateError:
            return {}

    previous = store.dir.with_name(store.dir.name + ".previous")
    mine, theirs = named(store.dir), named(previous)
    size = _disk_size(store.dir) + _objects_size(store, mine)
    prev = _disk_size(previous) + _objects_size(store, set(theirs) - set(mine))
    return size, prev


def _objects_size(store: RunStore, names: Iterable[str]) -> int:
    total = 0
    for name in names:
        with contextlib.suppress(OSError):
            total += store.objects.path(name).stat().st_size
    return total


def _disk_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist)."""
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f), follow_symlinks=False).st_size
    return total


def _fmt_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _age_seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise UsageError(
            f"--older-than {text!r}: use a number and a unit, like 30d or 12h"
        ) from None


def cmd_clean(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    if (args.all or args.older_than) and (params or args.run_id):
        which = "--all" if args.all else "--older-than"
        raise UsageError(
            f"{which} chooses runs of every parameter; drop --param/--run-id, or drop {which} "
            "to delete the one run they name"
        )
    runs = _runs_of(flow, args.state_dir)
    if args.all:
        chosen = runs
    elif args.older_than:
        cutoff = time.time() - _age_seconds(args.older_than)
        chosen = [(s, i) for s, i in runs if (i["last"] or 0) < cutoff]
    else:
        rid = args.run_id or flow.run_id(params)
        chosen = [(s, i) for s, i in runs if s.dir.name == rid]
        if not chosen:
            print(f"no stored run {rid!r} of flow {flow.name}")
            return 0
    deleted = False
    for store, _ in chosen:
        holder = store.holder()
        if holder:
            print(f"kept {store.dir.name}: it is running ({holder})")
            continue
        if args.orphans:
            _clean_orphans(flow, store, args.dry_run)
            continue
        if args.dry_run:
            print(f"would delete {store.dir}")
            continue
        prev = store.dir.with_name(store.dir.name + ".previous")
        for folder in (store.dir, prev):
            try:
                if folder.exists():
                    shutil.rmtree(folder)
            except OSError as exc:
                raise StateWriteError(
                    folder, exc, "Make the state folder writable first."
                ) from None
        print(f"deleted {store.dir}")
        deleted = True
    if args.orphans:
        _clean_objects(flow, args.state_dir, args.dry_run)
    elif deleted:  # the outputs only the deleted runs used go too
        _clean_objects(flow, args.state_dir, dry_run=False, quiet=True)
    return 0


def _clean_orphans(flow: Flow, store: RunStore, dry_run: bool) -> None:
    from .reclaim import find_orphans

    if not store.outputs.is_dir():
        return  # its outputs are objects, shared by the flow's runs (see _clean_objects)
    with store.lock():  # no run of it can start meanwhile
        found = find_orphans(flow.graph(), store, store.load())
        if not found.files:
            print(f"{store.dir.name}: no orphaned output files")
            return
        if dry_run:
            for path in found.files:
                print(f"would delete {path}")
            print(f"{store.dir.name}: {len(found.files)} file(s), {_fmt_size(found.size)}")
            return
        freed = found.delete()
    print(f"{store.dir.name}: deleted {len(found.files)} orphaned file(s), {_fmt_size(freed)}")


def _clean_objects(flow: Flow, state_dir: str | None, dry_run: bool, quiet: bool = False) -> None:
    """Delete the flow's objects that no run uses (``--dry-run``: list them; ``quiet``: say
    nothing when there are none, or when a run keeps them from being deleted now)."""
    from .reclaim import find_unused_objects
    from .shared import SharedCache

    root = default_state_dir(state_dir)
    since = time.time()
    found = find_unused_objects(flow.graph(), root, flow.name)
    if found.held is not None:
        if not quiet:
            print(f"kept the objects of flow {flow.name}: {found.held}")
        return
    if not found.files:
        if not quiet:
            print(f"{flow.name}: no unused objects")
        return
    if dry_run:
        for path, what in found.files:
            print(f"would delete {path}" + (f" ({what})" if what else ""))
        print(f"{flow.name}: {len(found.files)} unused object(s), {_fmt_size(found.size)}")
        return
    count, freed = found.delete(since)
    SharedCache(RunStore(root, flow.name, "_").dir.parent).compact()
    print(f"{flow.name}: deleted {count} unused object(s), {_fmt_size(freed)}")


def cmd_logs(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    name = args.step
    base = name.split("[", 1)[0]  # a fan-out instance: load[7], transform[batch=3]
    if name not in flow.steps and (base == name or base not in flow.steps):
        raise UnknownStepError(name, flow.steps.keys())
    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    path = store.logs / f"{safe_name(name)}.log"
    if not path.is_file():
        hint = "it has not run in this run yet, or it printed and logged nothing"
        if store.exists():
            inst = sorted(s for s in store.load().steps if s.startswith(name + "["))
            if inst:
                shown = ", ".join(inst[:5]) + (", ..." if len(inst) > 5 else "")
                hint = f"it ran as instances, each with its own log: {shown}"
        raise UsageError(f"step {name!r} has no log in run {store.dir.name} ({path}): {hint}")
    text = path.read_text(encoding="utf-8", errors="replace")
    if args.tail is not None:
        text = "".join(text.splitlines(keepends=True)[-args.tail :] if args.tail > 0 else [])
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0
