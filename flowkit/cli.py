"""``flowkit`` / ``python -m flowkit``: the command line.

Exit codes: 0 every step succeeded or was cached; 1 a step failed; 2 invalid flow, command line or
state; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import config, pipes
from .cancel import cancel_run
from .cli_help import epilog
from .cmd_project import SHELLS, cmd_completion, cmd_config
from .cmd_run import (
    COST_HELP,
    add_execution_options,
    cmd_run,
    cost_rates,
    notifiers,
    run_options,
)
from .cmd_runs import cmd_clean, cmd_logs, cmd_runs
from .cmd_schedule import add_schedule_options, cmd_schedule
from .errors import FlowkitError, UsageError
from .flow import Flow
from .inspect_cmds import NoSuchRunError, cmd_explain, cmd_graph, cmd_status
from .loader import load_flow
from .store import default_state_dir

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
    add_execution_options(r)
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
    add_execution_options(sc)
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


def _cmd_schedule(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
    return cmd_schedule(flow, params, args, notifiers(args), run_options(args))


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
        rates=cost_rates(args),
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
    "run": cmd_run,
    "status": cmd_status,
    "cancel": _cmd_cancel,
    "schedule": _cmd_schedule,
    "show": cmd_status,
    "explain": cmd_explain,
    "runs": cmd_runs,
    "clean": cmd_clean,
    "graph": cmd_graph,
    "report": _cmd_report,
    "logs": cmd_logs,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
