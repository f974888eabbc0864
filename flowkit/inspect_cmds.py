"""The inspection commands: ``status`` (``show``), ``explain`` and ``graph`` — they read a
flow's stored runs, never run anything (``--json`` for scripts). ``runs``, ``clean`` and
``logs`` are in :mod:`flowkit.cmd_runs`."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path

from .cancel import was_cancelled
from .errors import UnknownStepError, UsageError
from .flow import Flow
from .inspect_json import explain_json, graph_json, print_json, status_json
from .keys import safe_name
from .result import ErrorInfo, fmt_duration, shown
from .resume import CONDITION_FALSE, Decision, PlannedStep
from .store import LoadedState, RunStore, duration_of, skip_status
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
