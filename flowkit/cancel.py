"""``flowkit cancel``: ask a running run, from another terminal, to stop gracefully.

The run's process is sent SIGTERM, which it handles as it does Ctrl-C: no new steps start, running
ones get their grace period, and the journal keeps every finished step, so the same ``run``
command resumes it. A marker in the run's folder lets ``status`` say ``cancelled`` rather than
``interrupted``.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

import orjson

from .errors import UsageError
from .store import RunStore

__all__ = ["cancel_run", "was_cancelled"]

MARKER = "cancel.json"


def cancel_run(store: RunStore) -> int:
    """Send SIGTERM to the process running ``store``'s run; returns its pid.

    Raises:
        UsageError: the run is not running, or runs on another host.
    """
    holder = store.holder()
    if holder is None:
        raise UsageError(
            f"run {store.dir.name} is not running (nothing to cancel); 'flowkit status' shows "
            "its state"
        )
    try:
        owner: dict[str, Any] = orjson.loads((store.dir / "owner.json").read_bytes())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"run {store.dir.name} is running ({holder}), but its owner is "
            "unknown; stop it where it runs"
        ) from None
    if host != socket.gethostname():
        raise UsageError(f"run {store.dir.name} runs on host {host}; cancel it there")
    marker = orjson.dumps({"requested": time.time(), "by": os.getpid(), "pid": pid})
    (store.dir / MARKER).write_bytes(marker)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise UsageError(f"run {store.dir.name}: process {pid} has already ended") from None
    return pid


def was_cancelled(store: RunStore, session_started: float | None) -> bool:
    """True when a cancel was requested during the run's latest session."""
    try:
        marker = orjson.loads((store.dir / MARKER).read_bytes())
        return float(marker["requested"]) >= float(session_started or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return False
