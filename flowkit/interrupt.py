"""Turning SIGINT/SIGTERM into a clean stop of a run, bounded by its grace period.

The first signal asks the run to stop starting steps (``on_first``); running steps get the grace
period to finish. When it is over, the run kills what it can itself (see ``Engine``); should the
run still not have stopped a moment later (a step running in the main thread, which nothing can
interrupt), the process kills every process a step started (:func:`flowkit.stopping.kill_all`)
and exits with status 130. A second signal does the same at once. Either way the journal holds
every step that finished, and a torn last line, if any, is mended by the next run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from . import stopping

__all__ = ["EXIT_MARGIN_S", "exit_now", "interruptible"]

#: Seconds after the grace period before the process exits by itself: the run's own stop (which
#: writes the end of the journal and the summary) normally comes first.
EXIT_MARGIN_S = 0.5


def exit_now(why: str) -> None:
    """Kill every process a step started, say ``why`` on stderr, and exit with status 130."""
    stopping.kill_all()
    if os.isatty(1):
        os.write(1, b"\x1b[?25h")  # the live progress view hides the cursor
    os.write(
        2,
        f"\nflowkit: {why}: stopping now; finished steps are saved. Run the same command "
        "again to resume.\n".encode(),
    )
    os._exit(130)


@contextmanager
def interruptible(
    on_first: Callable[[str], None],
    describe: Callable[[], str],
    enabled: bool = True,
    grace: float | None = None,
) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM calls ``on_first(signal name)`` after printing
    ``describe()``; the second exits the process, and so does the end of ``grace`` seconds (plus
    :data:`EXIT_MARGIN_S`) if the block is still running then. Only in the main thread (signals
    are delivered there); elsewhere, or when not ``enabled``, signals keep their handlers (a
    default SIGINT handler is wrapped to note that a real signal arrived, see
    :func:`flowkit.stopping.signal_arrived`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping.mark_signal(False)
    if not enabled:
        with _noting_sigint():
            yield
        return
    received: list[str] = []
    watchdog: list[threading.Timer] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        stopping.mark_signal()
        if received:
            exit_now("second interrupt")
        name = signal.Signals(signum).name
        received.append(name)
        os.write(2, f"\nflowkit: {name} received: {describe()}\n".encode())
        on_first(name)
        if grace is not None:
            timer = threading.Timer(
                grace + EXIT_MARGIN_S, exit_now, (f"grace period of {grace:g}s is over",)
            )
            timer.daemon = True
            timer.start()
            watchdog.append(timer)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for timer in watchdog:
            timer.cancel()
        for sig, previous in old.items():
            signal.signal(sig, previous)


@contextmanager
def _noting_sigint() -> Iterator[None]:
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        stopping.mark_signal()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
