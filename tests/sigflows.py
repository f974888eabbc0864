"""Flows run in subprocesses by test_timeouts_and_signals.py."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from flowkit import Flow

LOG = Path(os.environ.get("SIG_LOG", "sig.log"))


def mark(name: str) -> None:
    with LOG.open("a") as f:
        f.write(name + "\n")


interruptible = Flow("interruptible")


@interruptible.step()
def first() -> int:
    mark("first")
    return 1


@interruptible.step()
def slow(first: int) -> int:
    mark("slow-start")
    time.sleep(float(os.environ.get("SLOW_SECONDS", "1.0")))
    mark("slow")
    return first + 1


@interruptible.step()
def last(slow: int) -> int:
    mark("last")
    return slow + 1


spawner = Flow("spawner")


@spawner.step(isolate=True, timeout=0.5)
def spawns_children() -> None:
    child = subprocess.Popen(["sleep", "60"])
    Path(os.environ["CHILD_PID_FILE"]).write_text(str(child.pid))
    child.wait()


# --- long steps for the grace bound: SIG_LOG gets "<name>-start" when each begins -------------

long_python = Flow("long_python")


@long_python.step()
def quick() -> int:
    mark("quick")
    return 1


@long_python.step()
def long(quick: int) -> int:
    mark("long-start")
    time.sleep(float(os.environ.get("SLOW_SECONDS", "20")))
    mark("long-end")
    return quick + 1


long_shell = Flow("long_shell")
long_shell.shell(
    "long",
    'echo "$$" > "$SHELL_PID_FILE"; echo long-start >> "$SIG_LOG"; sleep "${SLOW_SECONDS:-20}"; '
    'echo long-end >> "$SIG_LOG"',
)


isolated_timeout = Flow("isolated_timeout")


@isolated_timeout.step(isolate=True, timeout=0.5)
def stuck() -> None:
    time.sleep(30)


@isolated_timeout.step()
def independent() -> str:
    time.sleep(1.0)  # still running when `stuck` times out: the run must go on
    mark("independent")
    return "done"


exits = Flow("exits")


@exits.step()
def calls_sys_exit() -> None:
    raise SystemExit(3)


@exits.step()
def raises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@exits.step()
def fine() -> str:
    mark("fine")
    return "ok"
