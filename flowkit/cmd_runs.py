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
from pathlib import Path
from typing import Any

from .errors import StateError, StateWriteError, UnknownStepError, UsageError
from .flow import Flow
from .inspect_json import print_json, runs_json
from .keys import safe_name
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
                out.append((store, _run_info(store)))
    return out


def _run_info(store: RunStore) -> dict[str, Any]:
    """Params, start, last activity, status and step counts of one stored run.

    Read from the end-of-run snapshot when the journal has not grown since (cheap), else by
    replaying the journal. A run whose state cannot be read is reported ``corrupt``.
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
    for rec in state.steps.values():
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
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
    if args.json:
        print_json(
            runs_json([(st, i, "running" if st.holder() else i["status"]) for st, i in runs])
        )
        return 0
    if not runs:
        print(f"flow {flow.name} has no runs in {default_state_dir(args.state_dir)}")
        return 0
    print(f"{'RUN ID':<32} {'STATUS':<12} {'LAST ACTIVE':<20} {'SIZE':>9} {'STEPS':<28} PARAMS")
    total = 0
    for store, info in runs:
        holder = store.holder()
        st = "running" if holder else info["status"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["last"] or 0))
        counts = ", ".join(f"{v} {k}" for k, v in sorted(info["counts"].items()))
        size = _disk_size(store.dir)
        prev = _disk_size(store.dir.with_name(store.dir.name + ".previous"))
        total += size + prev
        extra = f" (+{_fmt_size(prev)} in {store.dir.name}.previous)" if prev else ""
        print(
            f"{store.dir.name:<32} {st:<12} {when:<20} {_fmt_size(size):>9} {counts:<28} "
            f"{info['params']}{extra}"
        )
    print(f"{len(runs)} run(s), {_fmt_size(total)} on disk")
    return 0


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
    return 0


def _clean_orphans(flow: Flow, store: RunStore, dry_run: bool) -> None:
    from .reclaim import find_orphans

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
