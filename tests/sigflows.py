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
