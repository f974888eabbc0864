"""Sending a finished run's notifiers together, and recording how each delivery went."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from ..errors import StateError
from ..result import RunResult
from ..store import RunStore
from .base import Delivery, Notifier, log, redact, resume_command, run_summary

__all__ = ["alert", "deliver_all", "record"]

#: Extra seconds a delivery's thread is waited for beyond its deadline (the deadline's own timer
#: normally ends it on time; this only matters for a stuck name lookup).
SLACK_S = 0.5


def deliver_all(
    notifiers: Sequence[Notifier], result: RunResult, *, resume: str | None = None
) -> list[Delivery]:
    """Send every notifier that wants ``result``'s status, concurrently; wait for all of them.

    The wait is bounded by the longest notifier deadline: a delivery still running then is
    reported as failed and left behind (in a daemon thread whose sockets are already shut).
    ``resume``: the command that resumes the run (default: this process's command line).
    """
    due = [n for n in notifiers if n.wants(result.status)]
    if not due:
        return []
    secrets = [s for n in notifiers for s in n.secrets()]
    cmd = resume if resume is not None else resume_command()
    summary = run_summary(result, resume=redact(cmd, secrets) if cmd else None)
    out: list[Delivery | None] = [None] * len(due)

    def work(i: int, n: Notifier) -> None:
        out[i] = n.notify(summary)

    threads = []
    started = time.monotonic()
    for i, n in enumerate(due):
        t = threading.Thread(target=work, args=(i, n), name=f"flowkit-notify-{n.kind}", daemon=True)
        t.start()
        threads.append(t)
    for n, t in zip(due, threads, strict=True):
        t.join(max(0.0, started + n.timeout + SLACK_S - time.monotonic()))
    deliveries = []
    for i, n in enumerate(due):
        d = out[i]
        if d is None:  # still running past its deadline
            d = Delivery(
                n.kind,
                n.target(),
                n.event_for(result.status),
                False,
                1,
                time.monotonic() - started,
                f"no complete answer within {n.timeout:g}s",
            )
        deliveries.append(d)
    return deliveries


def record(store: RunStore, result: RunResult, deliveries: Sequence[Delivery]) -> None:
    """Add the deliveries to the run's journal (``notify`` records) and ``report.json``.

    Raises:
        StateError: the run is locked by another process, or its state cannot be written.
    """
    now = time.time()
    with store.lock():
        store.append_notes([{"ev": "notify", "time": now, **d.to_json()} for d in deliveries])
        store.write_report(result.to_json())


def alert(
    notifiers: Sequence[Notifier],
    result: RunResult,
    store: RunStore | None = None,
    *,
    resume: str | None = None,
) -> list[Delivery]:
    """Deliver, report failures on the ``flowkit`` logger, and record all in the run's state.

    The deliveries are also put in ``result.notifications``. Nothing here raises: a delivery or
    its recording that fails is logged and the run's outcome stays what it was.
    """
    deliveries = deliver_all(notifiers, result, resume=resume)
    if not deliveries:
        return deliveries
    result.notifications = [d.to_json() for d in deliveries]
    for d in deliveries:
        log.log(logging.INFO if d.ok else logging.WARNING, "flowkit: %s", d.describe())
    if store is not None:
        try:
            record(store, result, deliveries)
        except (StateError, OSError) as exc:
            log.warning("flowkit: the alert outcomes were not recorded in the run's state: %s", exc)
    return deliveries
