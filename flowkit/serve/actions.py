"""What the dashboard may change, with ``--allow-actions``: cancelling a running run.

Cancelling sends SIGTERM to the process that holds the run (the pid its ``owner.json`` records,
on this host). A run started by ``flowkit run`` treats it like Ctrl-C: it starts no new step,
gives running steps their grace period (``--grace``), journals what finished and ends
``interrupted``; running the same command again resumes it.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import orjson

from .tail import process_alive

__all__ = ["CancelError", "cancel_run"]


class CancelError(Exception):
    """The run cannot be cancelled from here (not running, or run by another machine)."""


def cancel_run(run_dir: Path) -> str:
    """Ask the process running the run in ``run_dir`` to stop; returns what was done.

    Raises:
        CancelError: no process runs it, or that process is on another host.
    """
    try:
        owner = orjson.loads((run_dir / "owner.json").read_bytes())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CancelError(f"run {run_dir.name} is not running (no process holds it)") from None
    if _ended(run_dir) or not process_alive(run_dir):
        raise CancelError(f"run {run_dir.name} is not running (it has ended)")
    if host != socket.gethostname():
        raise CancelError(
            f"run {run_dir.name} runs on host {host}, not here: cancel it there (pid {pid})"
        )
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise CancelError(f"run {run_dir.name} is not running (pid {pid} is gone)") from None
    return f"SIGTERM sent to pid {pid}: running steps get their grace period, then it stops"


def _ended(run_dir: Path) -> bool:
    """The journal's last record is the run's end (read from the end of the file only)."""
    path = run_dir / "journal.jsonl"
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4096))
            lines = f.read().rstrip(b"\n").rsplit(b"\n", 1)
    except FileNotFoundError:
        return True
    try:
        last = orjson.loads(lines[-1])
    except orjson.JSONDecodeError:
        return False
    return isinstance(last, dict) and last.get("ev") == "end"
