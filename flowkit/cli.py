"""``flowkit`` / ``python -m flowkit``: the command line.

Exit codes: 0 every step succeeded or was cached; 1 a step failed; 2 invalid flow, command line or
state; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import config, pipes
from .cancel import cancel_run
from .cli_help import epilog
from .cmd_project import SHELLS, cmd_completion, cmd_config
from .cmd_schedule import add_schedule_options, cmd_schedule
from .cost import CostRates
from .errors import FlowkitError, UnknownStepError, UsageError
from .executors import EXECUTORS
from .flow import Flow
from .inspect_cmds import (
    NoSuchRunError,
    cmd_clean,
    cmd_explain,
    cmd_graph,
    cmd_runs,
    cmd_status,
    print_instances,
)
from .keys import safe_name
from .listeners import ConsoleListener, JsonLogListener
from .loader import load_flow
from .options import RunOptions
from .result import RunResult, RunStatus, shown
from .resume import Decision
from .store import (
    default_state_dir,
)

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = ["main"]


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


COST_HELP = (
    "price the steps run, e.g. cpu_hour=0.05,gb_hour=0.01: each step's cost and the total "
    "in the report (default: $FLOWKIT_COST_RATE)"
)


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
        "--cluster-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="with --address: how long to wait for the scheduler and a first worker (default 60)",
    )
    c.add_argument(
        "--durability",
        choices=("flush", "fsync"),
        help="fsync each journal commit (survives power loss); default flush",
    )
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
        default=None,
        metavar="SECONDS",
        help="deadline of each alert's delivery, retries included (default 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flowkit", description="Run Python workflows: resumable, parallel, local.")
    p.add_argument("--version", action="version", version=f"flowkit {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def target_cmd(name: str, help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
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
    r.add_argument("--seed", type=int, help="seed for retry jitter")
    r.add_argument("--cost-rate", metavar="RATES", help=COST_HELP)
    r.add_argument(
        "--trace",
        action="store_true",
        help="send OpenTelemetry traces, configured by the OTEL_* variables (OTLP exporter if "
        "installed, else the console); needs flowkit[trace]",
    )
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
    add_schedule_options(sc)
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
        _json_option(st)
    target_cmd("cancel", "Ask a running run to stop gracefully (as SIGTERM); run resumes it.")
    e = target_cmd("explain", "Say why a step is cached or would run.")
    e.add_argument("step")
    _json_option(e)
    _json_option(target_cmd("runs", "List the runs of a flow."))
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
    _json_option(g)
    rp = target_cmd("report", "Report a run: a short text summary, or one HTML page.")
    rp.add_argument("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    rp.add_argument("--cost-rate", metavar="RATES", help=COST_HELP)
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
    cf = sub.add_parser(
        "config",
        help="Print the effective settings and where each came from.",
        description="Print the run options set by FLOWKIT_* variables and [tool.flowkit] in "
        "pyproject.toml (flags override both), and where each value came from.",
        epilog=epilog("config"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _json_option(cf)
    co = sub.add_parser(
        "completion",
        help="Print a shell completion script.",
        description="Print the completion script of a shell (needs the completion extra: "
        "pip install 'flowkit[completion]').",
        epilog=epilog("completion"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    co.add_argument("shell", choices=SHELLS)
    return p


def _json_option(c: argparse.ArgumentParser) -> None:
    c.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point; returns the exit code (``python -m flowkit`` exits with it)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare `flowkit`: the full help, and exit 2 as for any incomplete line
        parser.print_help(sys.stderr)
        print("flowkit: error: a command is required: flowkit COMMAND --help", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command == "config":
            return cmd_config(args)
        if args.command == "completion":
            return cmd_completion(parser, args.shell)
        flow = load_flow(args.target)
        params = _params(args.param)
        config.apply(args, getattr(flow, "default_workers", 1))
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
        if args.output:
            raise UsageError("--dry-run runs nothing, so --output would write nothing: drop one")
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
    tracing: list[Any] = []
    provider = None
    if args.trace:
        from .otel import OtelListener, configure_tracing

        provider = configure_tracing(flow.name)
        tracing.append(OtelListener(provider))
    try:
        result = flow.run(
            params,
            state_dir=args.state_dir,
            run_id=args.run_id,
            fresh=args.fresh,
            options=_run_options(args),
            listeners=[*tracing, listener, *notifiers],
        )
    finally:
        close = getattr(listener, "close", None)
        if close is not None:
            close()  # the live view, should the run raise
        if provider is not None:
            provider.shutdown()  # exports what is left
    if result.trace_id:
        print(f"flowkit: trace id {result.trace_id}", file=sys.stderr)
    if args.output:
        _write_output(args.output, result)
    if result.status is RunStatus.INTERRUPTED:
        _exit_if_abandoned(result.exit_code)
    return result.exit_code


def _cost_rates(args: argparse.Namespace) -> CostRates | None:
    """``--cost-rate``, else ``$FLOWKIT_COST_RATE``, else ``[tool.flowkit] cost_rate`` (filled in
    by :func:`flowkit.config.apply`), else no cost."""
    if getattr(args, "cost_rate", None):
        return CostRates.parse(args.cost_rate)
    env = os.environ.get("FLOWKIT_COST_RATE", "").strip()  # commands that skip config.apply
    return CostRates.parse(env, "FLOWKIT_COST_RATE") if env else None


def _run_options(args: argparse.Namespace) -> RunOptions:
    """How to run, from the execution options of ``run`` / ``schedule`` (those a command does
    not have keep their defaults). Raises UsageError naming a bad value."""
    given = vars(args)
    return RunOptions(
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        cluster_wait=given.get("cluster_wait", 60.0),
        cost_rates=_cost_rates(args),
        fail_fast=not args.continue_on_error,
        rerun=(*given.get("rerun", ()), *(given.get("from_") or ())),
        only=tuple(given.get("only") or ()),
        timeout=given.get("timeout"),
        grace=given.get("grace", 10.0),
        durability=given.get("durability", "flush"),
        seed=given.get("seed"),
        handle_signals=True,
    )


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
        options=_run_options(args),  # the options the run would get
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
            print_instances(s.instances)
    n = len(p.would_run())
    print(f"{n} step(s) would run, {len(p.steps) - n} would not.")
    return 0


def _cmd_schedule(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    return cmd_schedule(flow, params, args, _notifiers(args), _run_options(args))


def _cmd_cancel(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    store = flow.store(params, state_dir=args.state_dir, run_id=args.run_id)
    pid = cancel_run(store)
    print(
        f"asked run {store.dir.name} of flow {flow.name} (pid {pid}) to stop: no new steps "
        "start, running ones get their grace period. Run the same command again to resume."
    )
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
        attempts=AttemptLog.read(store.journal_path),
        rates=_cost_rates(args),
        logs=store.logs if args.html else None,
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
    config.apply(args, 1)  # --state-dir, else $FLOWKIT_STATE_DIR, else [tool.flowkit] state_dir
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
    "status": cmd_status,
    "cancel": _cmd_cancel,
    "schedule": _cmd_schedule,
    "show": cmd_status,
    "explain": cmd_explain,
    "runs": cmd_runs,
    "clean": cmd_clean,
    "graph": cmd_graph,
    "report": _cmd_report,
    "logs": _cmd_logs,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
