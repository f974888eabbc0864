"""The inspection commands: ``status`` (``show``), ``explain`` and ``graph`` — they read a
flow's stored runs, never run anything (``--json`` for scripts). ``runs``, ``clean`` and
``logs`` are in :mod:`flowkit.cmd_runs`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .attempts import AttemptLog
from .cancel import was_cancelled
from .errors import UnknownStepError, UsageError
from .flow import Flow
from .inspect_json import explain_json, graph_json, print_json, status_json
from .result import ErrorInfo, fmt_duration, shown
from .resume import CONDITION_FALSE, Decision, PlannedStep
from .stepview import StepView, split_instance, view_step, views_of
from .store import LoadedState, RunStore
from .views import render_graph

__all__ = ["NoSuchRunError", "cmd_explain", "cmd_graph", "cmd_status"]


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
