"""``flowkit`` / ``python -m flowkit``: the command line.

Exit codes: 0 every step succeeded or was cached; 1 a step failed; 2 invalid flow, command line or
state; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import pipes
from .cancel import cancel_run, was_cancelled
from .errors import FlowkitError, StateError, StateWriteError, UnknownStepError, UsageError
from .executors import EXECUTORS
from .flow import Flow
from .keys import safe_name
from .listeners import ConsoleListener, JsonLogListener
from .loader import load_flow
from .result import ErrorInfo, RunResult, RunStatus, fmt_duration, shown
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

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = ["main"]


class NoSuchRunError(UsageError):
    """An inspection command was pointed at a run that has no state."""

    def __init__(self, flow: str, folder: Path) -> None:
        super().__init__(
            f"run {folder.name} of flow {flow} has no state (looked in {folder}); run it "
            "first, or pass the --run-id/--param/--state-dir it used"
        )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 too; keep our one-line style
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _params(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param date=2026-11-24")
        out[key.strip()] = value
    return out


def _version() -> str:
    from . import __version__

    return __version__


def _execution_options(c: argparse.ArgumentParser) -> None:
    """How steps run, and who hears about it: shared by ``run`` and ``schedule``."""
    c.add_argument(
        "--workers",
        "-w",
        "--parallelism",
        dest="workers",
        type=int,
        help="steps run at once (default 1; a workflow file: its largest parallelism)",
    )
    c.add_argument(
        "--executor", choices=EXECUTORS, help="default: inline for 1 worker, thread otherwise"
    )
    c.add_argument("--address", help="Dask scheduler address for --executor dask")
    c.add_argument(
        "--continue-on-error",
        action="store_true",
        help="after a failure, run every step that does not depend on it",
    )
    c.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="KIND:TARGET",
        help="alert when the run ends: slack:URL, email:ADDRESS, pagerduty:KEY, webhook:URL "
        "(repeatable)",
    )
    c.add_argument(
        "--notify-on",
        action="append",
        metavar="STATUS",
        help="run outcomes that alert: failed, timed_out, interrupted, succeeded, "
        "always (repeatable; default: the first three)",
    )
    c.add_argument(
        "--notify-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each alert's delivery, retries included (default 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flowkit", description="Run Python workflows: resumable, parallel, local.")
    p.add_argument("--version", action="version", version=f"flowkit {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def target_cmd(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("target", help="module:flow or path/to/pipeline.py:flow")
        c.add_argument(
            "--param",
            "-p",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a run parameter (repeatable)",
        )
        c.add_argument("--run-id", help="name the run (default: derived from flow and params)")
        c.add_argument("--state-dir", help="state folder (default: $FLOWKIT_STATE_DIR or .flowkit)")
        return c

    r = target_cmd("run", "Run a flow, resuming its run if it has one.")
    r.add_argument(
        "--fresh", action="store_true", help="start the run over (old state moved aside)"
    )
    r.add_argument("--dry-run", action="store_true", help="print the plan; run and write nothing")
    _execution_options(r)
    r.add_argument(
        "--rerun",
        action="append",
        default=[],
        metavar="STEP",
        help="re-run STEP (name or glob) and everything downstream (repeatable)",
    )
    r.add_argument(
        "--from", dest="from_", action="append", default=[], metavar="STEP", help="same as --rerun"
    )
    r.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="STEP",
        help="run just STEP; its upstreams must have stored results (repeatable)",
    )
    r.add_argument("--timeout", type=float, help="seconds for the whole run")
    r.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="on Ctrl-C/SIGTERM, seconds running steps get to finish (default 10)",
    )
    r.add_argument(
        "--durability",
        choices=("flush", "fsync"),
        default="flush",
        help="fsync each journal commit (survives power loss); default flush",
    )
    r.add_argument("--seed", type=int, help="seed for retry jitter")
    r.add_argument(
        "--output",
        metavar="FILE",
        help="write the run's result as JSON to FILE (status, counts, every step)",
    )
    r.add_argument("--log-format", choices=("text", "json"), default="text")
    r.add_argument("--quiet", "-q", action="store_true", help="print failures and summary only")
    r.add_argument("--verbose", "-v", action="store_true", help="print step starts too")
    r.add_argument(
        "--plain",
        action="store_true",
        help="one plain line per event, no live progress view (default when not a terminal)",
    )

    sc = target_cmd("schedule", "Run a flow at every time of a cron expression (foreground).")
    sc.add_argument("--cron", required=True, help="five fields, e.g. '0 2 * * *' (02:00 daily)")
    sc.add_argument("--tz", help="time zone of the cron expression (default UTC)")
    sc.add_argument(
        "--time-param",
        metavar="NAME",
        help="bind each firing's scheduled time (ISO) to this run parameter",
    )
    sc.add_argument(
        "--date-param",
        metavar="NAME",
        help="bind each firing's scheduled date (YYYY-MM-DD) to this run parameter",
    )
    sc.add_argument(
        "--run-per",
        choices=("firing", "day"),
        default="firing",
        help="firing: each firing is its own run (default); day: the firings of a day share one "
        "run (later ones resume it, and run only what failed or changed)",
    )
    sc.add_argument("--run-now", action="store_true", help="fire once at start, then follow --cron")
    sc.add_argument("--max-runs", type=int, metavar="N", help="stop after N firings")
    _execution_options(sc)
    for name in ("status", "show"):
        st = target_cmd(
            name,
            "Show each step's state in a run" + (" (same as status)." if name == "show" else "."),
        )
        st.add_argument(
            "--step",
            metavar="STEP",
            help="one step in detail: its error with the traceback, attempts, log",
        )
    target_cmd("cancel", "Ask a running run to stop gracefully (as SIGTERM); run resumes it.")
    e = target_cmd("explain", "Say why a step is cached or would run.")
    e.add_argument("step")
    target_cmd("runs", "List the runs of a flow.")
    c = target_cmd("clean", "Delete stored runs of a flow (never a running one).")
    c.add_argument("--all", action="store_true", help="every run of the flow")
    c.add_argument("--older-than", metavar="AGE", help="runs last active before AGE ago: 30d, 12h")
    c.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    c.add_argument(
        "--orphans",
        action="store_true",
        help="delete only the output files the run's latest state no longer uses",
    )
    g = target_cmd("graph", "Print the flow's graph.")
    g.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    rp = target_cmd("report", "Report a run: a short text summary, or one HTML page.")
    rp.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    lg = target_cmd("logs", "Print what a step printed and logged (every attempt, latest last).")
    lg.add_argument("step")
    lg.add_argument("--tail", "-n", type=int, metavar="N", help="only the last N lines")
    sv = sub.add_parser(
        "serve",
        help="Serve a live dashboard of the runs in a state folder.",
        description="Serve a live dashboard of the runs in a state folder (read-only unless "
        "--allow-actions). Needs the ui extra: pip install 'flowkit[ui]'.",
        epilog="examples:\n"
        "  flowkit serve                             # ./.flowkit on http://127.0.0.1:8765/\n"
        "  flowkit serve --state-dir runs --open     # another folder, opened in a browser\n"
        '  flowkit serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sv.add_argument("--state-dir", help="state folder (default: $FLOWKIT_STATE_DIR or .flowkit)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    sv.add_argument(
        "--token",
        help="require this token on every request (default $FLOWKIT_SERVE_TOKEN); "
        "needed for any --host but 127.0.0.1/localhost",
    )
    sv.add_argument(
        "--allow-actions", action="store_true", help="allow cancelling running runs from the page"
    )
    sv.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point; returns the exit code (``python -m flowkit`` exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "serve":
            return _cmd_serve(args)
        flow = load_flow(args.target)
        params = _params(args.param)
        if getattr(args, "workers", 0) is None:
            args.workers = getattr(flow, "default_workers", 1)
        handler = _COMMANDS[args.command]
        return handler(flow, params, args)
    except FlowkitError as exc:
        print(f"flowkit: error: {exc}", file=sys.stderr)
        return type(exc).exit_code
    except KeyboardInterrupt:
        print("flowkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `flowkit status ... | head`: the reader has all it wanted
        pipes.discard(sys.stdout)
        return pipes.EXIT_BROKEN_PIPE


def _cmd_run(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    if args.dry_run:
        return _print_plan(flow, params, args)
    verbosity = 0 if args.quiet else (2 if args.verbose else 1)
    from .events import Listener

    logs_dir = flow.store(params, state_dir=args.state_dir, run_id=args.run_id).logs
    listener: Listener
    if args.log_format == "json":
        listener = JsonLogListener()
    elif args.plain or args.quiet or not sys.stdout.isatty() or not _rich_available():
        listener = ConsoleListener(verbosity=verbosity, logs_dir=logs_dir)
    else:
        from .progress import LiveListener

        listener = LiveListener(logs_dir=logs_dir)
    notifiers = _notifiers(args)
    try:
        result = flow.run(
            params,
            state_dir=args.state_dir,
            run_id=args.run_id,
            fresh=args.fresh,
            workers=args.workers,
            executor=args.executor,
            address=args.address,
            fail_fast=not args.continue_on_error,
            rerun=[*args.rerun, *args.from_],
            only=args.only,
            timeout=args.timeout,
            durability=args.durability,
            listeners=[listener, *notifiers],
            seed=args.seed,
            handle_signals=True,
            grace=args.grace,
        )
    finally:
        close = getattr(listener, "close", None)
        if close is not None:
            close()  # the live view, should the run raise
    if args.output:
        _write_output(args.output, result)
    if result.status is RunStatus.INTERRUPTED:
        _exit_if_abandoned(result.exit_code)
    return result.exit_code


def _notifiers(args: argparse.Namespace) -> list[Notifier]:
    """The --notify notifiers (flowkit.notify is imported only when there are some)."""
    if not args.notify:
        return []
    from .notify import notifier_from_spec

    return [notifier_from_spec(s, args.notify_on, timeout=args.notify_timeout) for s in args.notify]


def _write_output(path: str, result: RunResult) -> None:
    """``--output FILE``: the run's result as JSON, every step with its exit code."""
    import os
    from pathlib import Path

    import orjson

    data = result.to_json()
    for step in data["steps"]:
        r = result.steps[step["name"]]
        code = r.error.exit_code if r.error is not None else None
        step["exit_code"] = (
            0 if r.status.ok else (code if code is not None else (1 if r.status.failed else None))
        )
        step.setdefault("error", None)
    data["exit_code"] = result.exit_code
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str))
        os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write the result ({exc})") from None


def _exit_if_abandoned(code: int) -> None:
    """Exit now if steps' threads were abandoned: the interpreter would wait for them."""
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _rich_available() -> bool:
    from .progress import rich_available

    return rich_available()


def _print_plan(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    p = flow.plan(
        params,
        state_dir=args.state_dir,
        run_id=args.run_id,
        fresh=args.fresh,
        rerun=[*args.rerun, *args.from_],
        only=args.only,
    )
    rid = args.run_id or flow.run_id(params)
    print(
        f"Plan for flow {shown(flow.name)}, run {shown(rid)} "
        "(dry run: nothing is executed or written)"
    )
    for i, tier in enumerate(p.tiers):
        print(f"tier {i}:")
        for name in tier:
            s = p.steps[name]
            verdict = "run" if s.decision is Decision.RUN else s.decision.value
            print(
                f"  {verdict:<6} {shown(name)}" + ("" if verdict == "cached" else f"  ({s.reason})")
            )
            _print_instances(s.instances)
    n = len(p.would_run())
    print(f"{n} step(s) would run, {len(p.steps) - n} would not.")
    return 0


#: Instances listed by name in a dry run, per step; the rest are counted.
PLAN_INSTANCES_SHOWN = 20


def _print_instances(planned: Sequence[PlannedStep]) -> None:
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


def _cmd_schedule(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    from .schedule import Schedule

    if args.max_runs is not None and args.max_runs < 1:
        raise UsageError(f"--max-runs must be >= 1, got {args.max_runs}")
    listeners = [ConsoleListener(), *_notifiers(args)]
    schedule = Schedule(
        flow,
        args.cron,
        params=params,
        time_param=args.time_param,
        date_param=args.date_param,
        tz=args.tz,
        state_dir=args.state_dir,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        fail_fast=not args.continue_on_error,
        listeners=listeners,
        handle_signals=True,
        run_per=args.run_per,
    )
    per = "each firing is its own run" if args.run_per == "firing" else "one run per day"
    first = "firing now" if args.run_now else "waiting for the first firing"
    print(
        f"Flow {flow.name}: scheduled at '{args.cron}' ({args.tz or 'UTC'}); {per}; {first}. "
        "Ctrl-C to stop.",
        flush=True,
    )

    def announce(due: datetime, seconds: float) -> None:
        print(f"Next firing at {due:%Y-%m-%d %H:%M %Z} (in {_wait_text(seconds)})", flush=True)

    # between firings SIGTERM stops the scheduler as Ctrl-C does (exit 130); during a firing,
    # the run's own handling applies (grace period, then stop)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    return schedule.loop(max_runs=args.max_runs, run_now=args.run_now, on_wait=announce)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _wait_text(seconds: float) -> str:
    """``2d 3h``, ``3h 2m``, ``4m 5s``, ``12s``: how long until a firing."""
    s = max(0, round(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s % 60}s" if m else f"{s}s"


def _cmd_status(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    if not store.exists():
        raise NoSuchRunError(flow.name, store.dir)
    state = store.load()
    holder = store.holder()
    if args.step is not None:
        return _status_of_step(flow, store, state, args.step, holder)
    status = (
        "running (" + holder + ")" if holder else (state.end or {}).get("status", "interrupted")
    )
    session = state.headers[-1].get("time") if state.headers else None
    if status == "interrupted" and was_cancelled(store, session):
        status = "cancelled"
    print(f"Flow {shown(flow.name)}, run {store.dir.name}: {status}")
    print(f"{'STEP':<28} {'STATE':<15} {'ATTEMPTS':>8} {'DURATION':>9}  DETAIL")
    instances: dict[str, list[str]] = {}  # fan-out instances (``load[3]``) under their step
    for key in dict.fromkeys([*state.steps, *state.session]):
        if "[" in key and key.endswith("]"):
            instances.setdefault(key[: key.index("[")], []).append(key)
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


def _cmd_cancel(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    pid = cancel_run(store)
    print(
        f"asked run {store.dir.name} of flow {flow.name} (pid {pid}) to stop: no new steps "
        "start, running ones get their grace period. Run the same command again to resume."
    )
    return 0


def _cmd_explain(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
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
    _print_instances(s.instances)
    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    last = store.load().steps.get(name) if store.exists() else None
    if last is not None and last.get("error"):
        err = ErrorInfo.from_json(last["error"])
        print(f"Its last attempt failed: {err}")
        for line in (err.traceback or "").rstrip("\n").split("\n"):
            if line:
                print(f"  {line}")
    return 0


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


def _cmd_runs(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    runs = _runs_of(flow, args.state_dir)
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


def _cmd_clean(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
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


def _cmd_graph(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    statuses: dict[str, str] = {}
    store = (
        flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
        if params or args.run_id
        else None
    )
    if store is not None and store.exists():
        statuses = {n: r["status"] for n, r in store.load().steps.items()}
    print(render_graph(flow.graph(), args.format, statuses))
    return 0


def _cmd_report(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    from .attempts import AttemptLog
    from .report import collect, render_report_html, render_text

    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    if not store.exists():
        raise NoSuchRunError(flow.name, store.dir)
    state = flow.load_state(params, state_dir=args.state_dir, run_id=args.run_id)
    report = collect(
        flow,
        state,
        run_id=args.run_id,
        running=store.holder() is not None,
        attempts=AttemptLog.read(store.journal_path) if args.html else None,
    )
    if not args.html:
        print(render_text(report))
        return 0
    out = Path(args.html)
    try:
        out.write_text(render_report_html(report), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--html {args.html}: cannot write the report ({exc})") from None
    print(out.resolve())
    return 0


def _cmd_logs(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
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


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from .serve import TOKEN_ENV, serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    serve(
        default_state_dir(args.state_dir),
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        allow_actions=args.allow_actions,
        open_browser=args.open,
    )
    return 0


_COMMANDS = {
    "run": _cmd_run,
    "status": _cmd_status,
    "cancel": _cmd_cancel,
    "schedule": _cmd_schedule,
    "show": _cmd_status,
    "explain": _cmd_explain,
    "runs": _cmd_runs,
    "clean": _cmd_clean,
    "graph": _cmd_graph,
    "report": _cmd_report,
    "logs": _cmd_logs,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
