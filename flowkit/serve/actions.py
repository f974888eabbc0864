"""What the dashboard may change, with ``--allow-actions``: cancelling a running run.

It does what ``flowkit cancel`` does (:func:`flowkit.cancel.cancel_run`): it leaves the cancel
marker in the run's folder and sends SIGTERM to the process that holds the run, which treats it
like Ctrl-C: it starts no new step, gives running steps their grace period (``--grace``),
journals what finished and ends; ``flowkit status`` and the dashboard then say ``cancelled``.
Running the same command again resumes it.
"""

from __future__ import annotations

from pathlib import Path

from ..cancel import cancel_run as request_cancel
from ..cancel import was_cancelled
from ..errors import UsageError
from ..store import RunStore

__all__ = ["CancelError", "cancel_run", "store_of", "was_cancelled_in"]


class CancelError(Exception):
    """The run cannot be cancelled from here (not running, or run by another machine)."""


def store_of(run_dir: Path) -> RunStore:
    """The :class:`RunStore` of a run folder (``<state dir>/<flow>/<run id>``)."""
    return RunStore(run_dir.parent.parent, run_dir.parent.name, run_dir.name)


def cancel_run(run_dir: Path) -> str:
    """Ask the process running the run in ``run_dir`` to stop; returns what was done.

    Raises:
        CancelError: no process runs it, or that process is on another host.
    """
    try:
        pid = request_cancel(store_of(run_dir))
    except UsageError as exc:
        raise CancelError(str(exc)) from None
    return f"SIGTERM sent to pid {pid}: running steps get their grace period, then it stops"


def was_cancelled_in(run_dir: Path, session_started: float | None) -> bool:
    """Whether a cancel was requested during the session that started at ``session_started``."""
    return was_cancelled(store_of(run_dir), session_started)
