"""Per-step resource figures gathered while a step runs: CPU time and peak memory of the
processes it waits for (shell commands, isolated children).

A ContextVar scopes the figures to the step that is running in this thread (or task), so
concurrent steps on the thread executor do not mix them up.
"""

from __future__ import annotations

import resource
from contextvars import ContextVar, Token

__all__ = ["Usage", "begin", "end", "record_child"]


class Usage:
    """CPU seconds and peak resident memory (bytes) of child processes of one step attempt."""

    __slots__ = ("cpu", "peak_rss")

    def __init__(self) -> None:
        self.cpu = 0.0
        self.peak_rss: int | None = None


_current: ContextVar[Usage | None] = ContextVar("flowkit_usage", default=None)


def begin() -> tuple[Usage, Token[Usage | None]]:
    usage = Usage()
    return usage, _current.set(usage)


def end(token: Token[Usage | None]) -> None:
    _current.reset(token)


def record_child(ru: resource.struct_rusage) -> None:
    """Add a reaped child's rusage (from ``os.wait4``) to the running step's figures."""
    usage = _current.get()
    if usage is None:
        return
    usage.cpu += ru.ru_utime + ru.ru_stime
    peak = ru.ru_maxrss * 1024  # kilobytes on Linux
    usage.peak_rss = peak if usage.peak_rss is None else max(usage.peak_rss, peak)


def self_peak_rss() -> int:
    """Peak resident memory of this process, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
