"""Turning SIGINT/SIGTERM into a clean stop of a run.

The first signal asks the run to stop starting steps (``on_first``); running steps get their grace
period. A second one exits at once with status 130: the journal holds every step that finished,
and a torn last line, if any, is mended by the next run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["interruptible"]


@contextmanager
def interruptible(
    on_first: Callable[[str], None], describe: Callable[[], str], enabled: bool = True
) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM calls ``on_first(signal name)`` after printing
    ``describe()``; the second exits the process. Only in the main thread (signals are delivered
    there); elsewhere, or when not ``enabled``, signals keep their handlers."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            os.write(2, b"\nflowkit: stopping now; finished steps are saved.\n")
            os._exit(130)
        name = signal.Signals(signum).name
        received.append(name)
        os.write(2, f"\nflowkit: {name} received: {describe()}\n".encode())
        on_first(name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
