"""``flowkit schedule TARGET``: its options, the foreground scheduler, and the units it prints
(``--print-crontab``, ``--print-systemd``) for those who prefer the system's scheduler."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .flow import Flow
from .keys import safe_name
from .listeners import ConsoleListener
from .schedule import CATCHUP, OVERLAP

if TYPE_CHECKING:
    from .notify import Notifier
    from .options import RunOptions

__all__ = ["add_schedule_options", "cmd_schedule"]


def add_schedule_options(sc: argparse.ArgumentParser) -> None:
    """The options of ``flowkit schedule`` (the execution options are added by the caller)."""
    sc.add_argument(
        "--cron",
        help="five fields, e.g. '0 2 * * *' (02:00 daily); default: the flow's own schedule",
    )
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
    sc.add_argument(
        "--catchup",
        choices=CATCHUP,
        default="latest",
        help="firings missed while the scheduler was down: latest (default) runs the most "
        "recent once, all runs each, none skips them",
    )
    sc.add_argument(
        "--overlap",
        choices=OVERLAP,
        default="skip",
        help="a firing due while the previous run still runs: skip (default, logged) or queue "
        "(runs when the previous one ends)",
    )
    sc.add_argument("--run-now", action="store_true", help="fire once at start, then follow --cron")
    sc.add_argument("--max-runs", type=int, metavar="N", help="stop after N firings")
    units = sc.add_mutually_exclusive_group()
    units.add_argument(
        "--print-crontab",
        action="store_true",
        help="print a crontab line that fires this flow (install with crontab -e); run nothing",
    )
    units.add_argument(
        "--print-systemd",
        action="store_true",
        help="print a systemd service that keeps this scheduler running; run nothing",
    )


def cmd_schedule(
    flow: Flow,
    params: dict[str, str],
    args: argparse.Namespace,
    notifiers: list[Notifier],
    options: RunOptions,
) -> int:
    """Run the scheduler in the foreground (each firing run with ``options``), or print the
    unit that would."""
    from .schedule import Schedule

    if args.run_id is not None:
        raise UsageError(
            "schedule does not take --run-id: each firing names its run after the flow, its "
            "parameters and the scheduled time (see --run-per)"
        )
    printing = "--print-crontab" if args.print_crontab else "--print-systemd"
    if (args.print_crontab or args.print_systemd) and (args.run_now or args.max_runs):
        raise UsageError(
            f"{printing} prints a unit and runs nothing: drop --run-now/--max-runs (the "
            "crontab line fires once per cron time by itself)"
        )
    if args.max_runs is not None and args.max_runs < 1:
        raise UsageError(f"--max-runs must be >= 1, got {args.max_runs}")
    schedule = Schedule(
        flow,
        args.cron,
        params=params,
        time_param=args.time_param,
        date_param=args.date_param,
        tz=args.tz,
        state_dir=args.state_dir,
        options=options,
        listeners=[ConsoleListener(), *notifiers],
        run_per=args.run_per,
        catchup=args.catchup,
        overlap=args.overlap,
    )
    if args.print_crontab:
        print(crontab_entry(schedule.cron, args))
        return 0
    if args.print_systemd:
        print(systemd_unit(flow.name, args))
        return 0
    per = "each firing is its own run" if args.run_per == "firing" else "one run per day"
    first = "firing now" if args.run_now else "waiting for the first firing"
    print(
        f"Flow {flow.name}: scheduled at '{schedule.cron}' ({args.tz or 'UTC'}); {per}; "
        f"catch-up {args.catchup}, overlap {args.overlap}; {first}. Ctrl-C to stop.",
        flush=True,
    )

    def announce(due: datetime, seconds: float) -> None:
        local = due.astimezone(schedule.tz)
        print(f"Next firing at {local:%Y-%m-%d %H:%M %Z} (in {wait_text(seconds)})", flush=True)

    # between firings SIGTERM stops the scheduler as Ctrl-C does (exit 130); during a firing,
    # the run's own handling applies (grace period, then stop)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    return schedule.loop(max_runs=args.max_runs, run_now=args.run_now, on_wait=announce)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def wait_text(seconds: float) -> str:
    """``2d 3h``, ``3h 2m``, ``4m 5s``, ``12s``: how long until a firing."""
    s = max(0, round(seconds))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s % 60}s" if m else f"{s}s"


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The options given to this command that the installed command must repeat."""
    out: list[str] = []
    for pair in args.param:
        out += ["--param", pair]
    for flag, value in (
        ("--state-dir", str(Path(args.state_dir).resolve()) if args.state_dir else None),
        ("--tz", args.tz),
        ("--time-param", args.time_param),
        ("--date-param", args.date_param),
        ("--workers", None if args.workers in (None, 1) else str(args.workers)),
        ("--executor", args.executor),
        ("--address", args.address),
        ("--durability", None if args.durability in (None, "flush") else args.durability),
    ):
        if value is not None:
            out += [flag, value]
    if args.run_per != "firing":
        out += ["--run-per", args.run_per]
    if args.continue_on_error:
        out.append("--continue-on-error")
    for spec in args.notify:
        out += ["--notify", spec]
    for status in args.notify_on or ():
        out += ["--notify-on", status]
    return out


def _base(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "flowkit", "schedule", args.target]


def crontab_entry(cron: str, args: argparse.Namespace) -> str:
    """A crontab line: cron fires a one-shot ``flowkit schedule --run-now --max-runs 1``
    (the same run ids and parameters as the foreground scheduler) from the current folder."""
    argv = [*_base(args), "--cron", cron, *_forwarded(args)]
    argv += ["--run-now", "--max-runs", "1", "--catchup", "none"]
    cmd = f"cd {shlex.quote(str(Path.cwd()))} && {shlex.join(argv)}"
    log = shlex.quote(str(Path.cwd() / f"flowkit-{safe_name(args.target)}.log"))
    lines = [f"# flowkit: {args.target} (install with: crontab -e)"]
    if args.tz:
        lines.append(f"CRON_TZ={args.tz}")
    lines.append(f"{cron} {cmd.replace('%', chr(92) + '%')} >> {log} 2>&1")
    return "\n".join(lines)


def systemd_unit(flow_name: str, args: argparse.Namespace) -> str:
    """A systemd service running this scheduler in the foreground: restarted on failure, stopped
    by SIGTERM (running steps get their grace period); missed firings are caught up on start."""
    argv = [*_base(args), *(["--cron", args.cron] if args.cron else []), *_forwarded(args)]
    argv += ["--catchup", args.catchup, "--overlap", args.overlap]
    unit = f"flowkit-{safe_name(flow_name)}"
    return "\n".join(
        [
            f"# {unit}.service: save as ~/.config/systemd/user/{unit}.service, then",
            f"#   systemctl --user daemon-reload && systemctl --user enable --now {unit}",
            "[Unit]",
            f"Description=flowkit schedule of {flow_name}",
            "After=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"WorkingDirectory={Path.cwd()}",
            f"ExecStart={shlex.join(argv)}",
            "KillSignal=SIGTERM",
            "TimeoutStopSec=30",
            "Restart=on-failure",
            "RestartSec=30",
            "",
            "[Install]",
            "WantedBy=default.target",
        ]
    )
