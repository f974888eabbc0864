"""The inspection commands: ``status`` (``show``), ``explain``, ``runs``, ``clean`` and
``graph`` — they read a flow's stored runs, never run anything (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .attempts import AttemptLog
from .cancel import was_cancelled
from .errors import StateError, StateWriteError, UnknownStepError, UsageError
from .flow import Flow
from .inspect_json import explain_json, graph_json, print_json, runs_json, status_json
from .keys import safe_name
from .result import ErrorInfo, fmt_duration, shown
from .resume import CONDITION_FALSE, Decision, PlannedStep
from .stepview import StepView, split_instance, view_step, views_of
from .store import (
    LoadedState,
    RunStore,
    check_folder,
    default_state_dir,
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
    # each attempt's own time and the wait before a retry: only steps that were retried need it
    attempts = AttemptLog.read(store.journal_path) if state.retries else None
    if args.step is not None:
        if args.json:
            raise UsageError("--json shows every step; drop --step, or drop --json")
        return _status_of_step(flow, store, state, args.step, holder, attempts)
    status = (
        "running (" + holder + ")" if holder else (state.end or {}).get("status", "interrupted")
    )
    session = state.headers[-1].get("time") if state.headers else None
    if status == "interrupted" and was_cancelled(store, session):
        status = "cancelled"
    views = views_of(flow.graph().order, state, running=bool(holder), attempts=attempts)
    if args.json:
        print_json(status_json(flow.name, store, status, views, _status_cells))
        return 0
    print(f"Flow {shown(flow.name)}, run {store.dir.name}: {status}")
    print(f"{'STEP':<28} {'STATE':<15} {'ATTEMPTS':>8} {'DURATION':>9}  DETAIL")
    for view, instances in views:
        print(_status_row(view))
        for inst in instances:
            print(_status_row(inst, indent="  "))
    if state.notifications:
        from .report import alert_line

        for rec in state.notifications:
            print(f"alert {alert_line(rec)}")
    return 0


def _status_of_step(
    flow: Flow,
    store: RunStore,
    state: LoadedState,
    name: str,
    holder: str | None,
    attempts: AttemptLog | None,
) -> int:
    known = {*flow.steps, *state.steps, *state.session}
    if name not in known:
        raise UnknownStepError(name, known)
    base = split_instance(name)[0]
    view = view_step(
        name,
        state,
        running=bool(holder),
        tries=attempts.by_step.get(name, ()) if attempts is not None else (),
        parent=base if name not in flow.steps and base in flow.steps else None,
        logs=store.logs,
    )
    print(f"Step {shown(name)} of flow {shown(flow.name)}, run {store.dir.name}: {view.status}")
    if state.steps.get(name) is not None:
        print(f"  attempts: {'' if view.attempts is None else view.attempts}")
        if view.duration is not None:
            print(f"  duration: {fmt_duration(view.duration)}")
    if view.reason and not (view.status == "succeeded" and view.reason == "new"):
        print(f"  reason:   {view.reason}")
    for n, text, _ in view.retried:
        print(f"  attempt {n} failed: {text}")
    if view.error is not None:
        print(f"  error:    {view.error}")
        for line in (view.error.traceback or "").rstrip("\n").split("\n"):
            if line:
                print(f"    {line}")
    if view.log is not None:
        print(f"  log:      {view.log}")
    return 0


def _status_row(view: StepView, indent: str = "") -> str:
    st, attempts, dur, detail = _status_cells(view)
    label = indent + shown(view.name)
    return f"{label:<28} {st:<15} {attempts:>8} {dur:>9}  {detail}".rstrip()


def _status_cells(view: StepView) -> tuple[str, str, str, str]:
    """State, attempts, duration and detail of one step, as ``status`` shows them."""
    attempts = "" if view.attempts is None else str(view.attempts)
    dur = fmt_duration(view.duration) if view.duration is not None else ""
    if view.status in ("skipped", "upstream_failed"):
        detail = view.reason
    elif view.error is not None:
        detail = str(view.error)
    else:
        detail = ""
    if view.retried and not detail:
        detail = f"retried {len(view.retried)}x; last: {view.retried[-1][1]}"
    return view.status, attempts, dur, detail


def cmd_explain(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    name = args.step
    base = split_instance(name)[0]  # a fan-out instance: fetch[page-7], fit[lr=0.1]
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
    if s.decision is Decision.CACHED:
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


def cmd_graph(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    statuses: dict[str, str] = {}
    store = (
        flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
        if params or args.run_id
        else None
    )
    if store is not None and store.exists():  # each step's status in the latest session
        views = views_of(flow.graph().order, store.load(), running=store.holder() is not None)
        statuses = {v.name: v.status for v, _ in views if v.status != "pending"}
    if args.json:
        if args.format != "text":
            raise UsageError(f"--json and --format {args.format}: choose one")
        print_json(graph_json(flow.graph(), statuses))
        return 0
    print(render_graph(flow.graph(), args.format, statuses))
    return 0
