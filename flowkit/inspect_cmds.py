"""The inspection commands: ``status`` (``show``), ``explain``, ``runs``, ``clean`` and
``graph`` — they read a flow's stored runs, never run anything (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .cancel import was_cancelled
from .errors import StateError, StateWriteError, UnknownStepError, UsageError
from .flow import Flow
from .inspect_json import explain_json, graph_json, print_json, runs_json, status_json
from .keys import safe_name
from .result import ErrorInfo, fmt_duration, shown
from .resume import CONDITION_FALSE, Decision, PlannedStep
from .store import (
    LoadedState,
    RunStore,
    check_folder,
    default_state_dir,
    duration_of,
    skip_status,
)
from .views import render_graph

__all__ = ["NoSuchRunError", "cmd_clean", "cmd_explain", "cmd_graph", "cmd_runs", "cmd_status"]


class NoSuchRunError(UsageError):
    """An inspection command was pointed at a run that has no state."""

    def __init__(self, flow: str, folder: Path) -> None:
        super().__init__(
            f"run {folder.name} of flow {flow} has no state (looked in {folder}); run it "
            "first, or pass the --run-id/--param/--state-dir it used"
        )


def cmd_status(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    if not store.exists():
        raise NoSuchRunError(flow.name, store.dir)
    state = store.load()
    holder = store.holder()
    if args.step is not None:
        if args.json:
            raise UsageError("--json shows every step; drop --step, or drop --json")
        return _status_of_step(flow, store, state, args.step, holder)
    status = (
        "running (" + holder + ")" if holder else (state.end or {}).get("status", "interrupted")
    )
    session = state.headers[-1].get("time") if state.headers else None
    if status == "interrupted" and was_cancelled(store, session):
        status = "cancelled"
    instances: dict[str, list[str]] = {}  # fan-out instances (``load[3]``) under their step
    for key in dict.fromkeys([*state.steps, *state.session]):
        if "[" in key and key.endswith("]"):
            instances.setdefault(key[: key.index("[")], []).append(key)
    if args.json:
        order = flow.graph().order
        rows = functools.partial(_step_state, state=state, holder=holder)
        print_json(status_json(flow.name, store, status, order, instances, rows, state))
        return 0
    print(f"Flow {shown(flow.name)}, run {store.dir.name}: {status}")
    print(f"{'STEP':<28} {'STATE':<15} {'ATTEMPTS':>8} {'DURATION':>9}  DETAIL")
    for name in flow.graph().order:
        print(_status_row(name, state, holder))
        for inst in instances.get(name, ()):
            print(_status_row(inst, state, holder, indent="  "))
    if state.notifications:
        from .report import alert_line

        for rec in state.notifications:
            print(f"alert {alert_line(rec)}")
    return 0


def _status_of_step(
    flow: Flow, store: RunStore, state: LoadedState, name: str, holder: str | None
) -> int:
    known = {*flow.steps, *state.steps, *state.session}
    if name not in known:
        raise UnknownStepError(name, known)
    st = _step_state(name, state, holder)[0]
    print(f"Step {shown(name)} of flow {shown(flow.name)}, run {store.dir.name}: {st}")
    done = state.steps.get(name)
    if done is not None:
        took = duration_of(done)
        print(f"  attempts: {done.get('attempts', '')}")
        if took is not None:
            print(f"  duration: {fmt_duration(took)}")
        if done.get("reason"):
            print(f"  reason:   {done['reason']}")
    tries = state.retries.get(name) or []
    for rec in tries:
        print(
            f"  attempt {rec.get('attempt')} failed: {ErrorInfo.from_json(rec.get('error') or {})}"
        )
    err = ErrorInfo.from_json(done["error"]) if done is not None and done.get("error") else None
    if err is not None:
        print(f"  error:    {err}")
        for line in (err.traceback or "").rstrip("\n").split("\n"):
            if line:
                print(f"    {line}")
    log = store.logs / f"{safe_name(name)}.log"
    if log.is_file():
        print(f"  log:      {log}")
    return 0


def _status_row(name: str, state: LoadedState, holder: str | None, indent: str = "") -> str:
    st, attempts, dur, detail = _step_state(name, state, holder)
    label = indent + shown(name)
    return f"{label:<28} {st:<15} {attempts:>8} {dur:>9}  {detail}".rstrip()


def _step_state(name: str, state: LoadedState, holder: str | None) -> tuple[str, str, str, str]:
    """State, attempts, duration and detail of one step, as ``status`` shows them."""
    done = state.steps.get(name)
    sess = state.session.get(name)
    st, attempts, dur, detail = "pending", "", "", ""
    if sess is not None and sess["ev"] == "start":
        st = "running" if holder else "interrupted"
        attempts = str(sess.get("attempt", 1))
    elif sess is not None and sess["ev"] == "cached":
        st = "cached"
    elif sess is not None and sess["ev"] == "skip":
        st, detail = skip_status(sess), sess.get("reason", "")
    if done is not None and st in ("pending", "cached"):
        if st == "pending":
            st = done["status"]
        attempts = str(done.get("attempts", ""))
        took = duration_of(done)
        dur = fmt_duration(took) if took is not None else ""
        err = done.get("error")
        detail = (
            str(ErrorInfo.from_json(err))
            if err
            else (done.get("reason", "") if st == "skipped" else "")
        )
    tries = state.retries.get(name)
    if tries and not detail:
        detail = f"retried {len(tries)}x; last: {ErrorInfo.from_json(tries[-1].get('error') or {})}"
    return st, attempts, dur, detail


def cmd_explain(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    name = args.step
    base = name.split("[", 1)[0]  # a fan-out instance: fetch[page-7], fit[lr=0.1]
    if name not in flow.steps and (base == name or base not in flow.steps):
        raise UnknownStepError(name, flow.steps.keys())
    p = flow.plan(params, state_dir=args.state_dir, run_id=args.run_id)
    if name in flow.steps:
        s = p.steps[name]
    else:
        parent = p.steps[base]
        found = next((i for i in parent.instances if i.name == name), None)
        if found is None:
            known = [i.name for i in parent.instances]
            if not known:  # not known before the run: what the journal remembers
                store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
                done = store.load().steps if store.exists() else {}
                known = [k for k in done if k.startswith(base + "[")]
                if name in known:
                    print(
                        f"{name}: last {done[name].get('status', 'recorded')}; whether it runs "
                        f"again is decided during the run — {parent.reason}."
                    )
                    return 0
            raise UnknownStepError(name, known or flow.steps.keys())
        s = found
    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    last = store.load().steps.get(name) if store.exists() else None
    if args.json:
        print_json(explain_json(s, name, last))
        return 0
    if s.decision is Decision.CACHED and s.reason.endswith("(shared cache)"):
        print(f"{name}: cached: {s.reason}.")
    elif s.decision is Decision.CACHED:
        print(f"{name}: cached — its code, inputs and parameters are unchanged since it finished.")
    elif s.decision is Decision.SKIP and s.reason == CONDITION_FALSE:
        print(
            f"{name}: skipped again — its condition (when=; condition/skip_if in a "
            "workflow file) was false for these inputs."
        )
    elif s.decision is Decision.SKIP:
        print(f"{name}: would be skipped — {s.reason}.")
    elif s.decision is Decision.UPSTREAM_FAILED:
        print(f"{name}: would not run (upstream_failed) — {s.reason}.")
    else:
        print(f"{name}: would run — {s.reason}.")
    print_instances(s.instances)
    if last is not None and last.get("error"):
        err = ErrorInfo.from_json(last["error"])
        print(f"Its last attempt failed: {err}")
        for line in (err.traceback or "").rstrip("\n").split("\n"):
            if line:
                print(f"  {line}")
    return 0


#: Instances listed by name in a dry run, per step; the rest are counted.
PLAN_INSTANCES_SHOWN = 20


def print_instances(planned: Sequence[PlannedStep]) -> None:
    """The instances of a fan-out step that would run, by name (the cached ones are counted)."""
    run = [i for i in planned if i.decision is not Decision.CACHED]
    for i in run[:PLAN_INSTANCES_SHOWN]:
        verdict = "run" if i.decision is Decision.RUN else i.decision.value
        print(f"    {verdict:<6} {i.name}  ({i.reason})")
    if len(run) > PLAN_INSTANCES_SHOWN:
        print(f"    ... and {len(run) - PLAN_INSTANCES_SHOWN} more instance(s) would run")
    cached = len(planned) - len(run)
    if cached and run:
        print(f"    ({cached} instance(s) cached)")


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


def cmd_graph(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    statuses: dict[str, str] = {}
    store = (
        flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
        if params or args.run_id
        else None
    )
    if store is not None and store.exists():
        statuses = {n: r["status"] for n, r in store.load().steps.items()}
    if args.json:
        if args.format != "text":
            raise UsageError(f"--json and --format {args.format}: choose one")
        print_json(graph_json(flow.graph(), statuses))
        return 0
    print(render_graph(flow.graph(), args.format, statuses))
    return 0
