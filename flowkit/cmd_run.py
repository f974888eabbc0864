"""``flowkit run TARGET``: the execution options it shares with ``schedule``, the options of a
run built from them, the run with its console, log and tracing listeners, ``--output`` and the
dry run's plan."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from .cost import CostRates
from .errors import UsageError
from .executors import EXECUTORS
from .flow import Flow
from .inspect_cmds import print_instances
from .listeners import ConsoleListener, JsonLogListener
from .options import RunOptions
from .result import RunResult, RunStatus, shown
from .resume import Decision

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = [
    "COST_HELP",
    "add_execution_options",
    "cmd_run",
    "cost_rates",
    "notifiers",
    "run_options",
]

COST_HELP = (
    "price the steps run, e.g. cpu_hour=0.05,gb_hour=0.01: each step's cost and the total "
    "in the report (default: $FLOWKIT_COST_RATE)"
)


def add_execution_options(c: argparse.ArgumentParser) -> None:
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


def cmd_run(flow: Flow, params: dict[str, str], args: argparse.Namespace) -> int:
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
    alerts = notifiers(args)
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
            options=run_options(args),
            listeners=[*tracing, listener, *alerts],
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


def cost_rates(args: argparse.Namespace) -> CostRates | None:
    """``--cost-rate``, else ``$FLOWKIT_COST_RATE``, else ``[tool.flowkit] cost_rate`` (filled in
    by :func:`flowkit.config.apply`), else no cost."""
    if getattr(args, "cost_rate", None):
        return CostRates.parse(args.cost_rate)
    env = os.environ.get("FLOWKIT_COST_RATE", "").strip()  # commands that skip config.apply
    return CostRates.parse(env, "FLOWKIT_COST_RATE") if env else None


def run_options(args: argparse.Namespace) -> RunOptions:
    """How to run, from the execution options of ``run`` / ``schedule`` (those a command does
    not have keep their defaults). Raises UsageError naming a bad value."""
    given = vars(args)
    return RunOptions(
        executor=args.executor,
        workers=args.workers,
        address=args.address,
        cluster_wait=given.get("cluster_wait", 60.0),
        cost_rates=cost_rates(args),
        fail_fast=not args.continue_on_error,
        rerun=(*given.get("rerun", ()), *(given.get("from_") or ())),
        only=tuple(given.get("only") or ()),
        timeout=given.get("timeout"),
        grace=given.get("grace", 10.0),
        durability=given.get("durability", "flush"),
        seed=given.get("seed"),
        handle_signals=True,
    )


def notifiers(args: argparse.Namespace) -> list[Notifier]:
    """The --notify notifiers (flowkit.notify is imported only when there are some)."""
    if not args.notify:
        return []
    from .notify import notifier_from_spec

    return [notifier_from_spec(s, args.notify_on, timeout=args.notify_timeout) for s in args.notify]


def _write_output(path: str, result: RunResult) -> None:
    """``--output FILE``: the run's result as JSON, every step with its exit code."""
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
        options=run_options(args),  # the options the run would get
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
