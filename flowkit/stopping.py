"""What an immediate stop must kill, and whether a real signal asked for it.

Steps that start processes (shell steps, isolated steps, process-pool workers) register a way to
kill them here while they run. When a run has to end now (a second Ctrl-C, or the grace period
after the first one is over), :func:`kill_all` ends every one of them, so no ``sh`` or child of
a step outlives flowkit; threads cannot be killed and are abandoned.

The registry is per process: a forked child starts with an empty one (see :func:`reset`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from collections.abc import Callable

__all__ = [
    "die_with_children_on_sigterm",
    "forget",
    "hard_stopping",
    "hold_if_stopping",
    "kill_all",
    "kill_group",
    "mark_signal",
    "register",
    "register_group",
    "reset",
    "signal_arrived",
]


class _Registry:
    """What this process must kill on a hard stop, and what it knows about stopping.

    Plain dict operations are atomic in CPython: no lock, because :func:`kill_all` runs in
    signal handlers and a handler must never wait for a lock its own thread may hold.
    """

    __slots__ = ("ids", "killers", "signalled", "stopping")

    def __init__(self) -> None:
        self.killers: dict[int, Callable[[], None]] = {}
        self.ids = itertools.count(1)
        self.stopping = False  # kill_all(final=True) ran: the process exits now
        self.signalled = False  # a real SIGINT/SIGTERM arrived

    def reset(self) -> None:
        self.killers.clear()
        self.stopping = self.signalled = False


#: One per process: signals and a process's children are the process's.
_REGISTRY = _Registry()


def register(kill: Callable[[], None]) -> int:
    """Remember ``kill`` (which must not block) until :func:`forget`; returns its token."""
    token = next(_REGISTRY.ids)
    _REGISTRY.killers[token] = kill
    return token


def register_group(pgid: int) -> int:
    """Remember process group ``pgid`` (a step's process and everything it started)."""
    return register(lambda: kill_group(pgid, signal.SIGKILL))


def forget(token: int) -> None:
    """The process or pool behind ``token`` has ended: nothing to kill any more."""
    _REGISTRY.killers.pop(token, None)


def kill_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``pgid``, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_all(final: bool = True) -> int:
    """Kill everything registered; returns how many were killed. Never raises.

    ``final``: the process exits right after, so a step that sees its process die waits for
    that instead of reporting a failure (see :func:`hold_if_stopping`).
    """
    if final:
        _REGISTRY.stopping = True
    killers = list(_REGISTRY.killers.values())
    _REGISTRY.killers.clear()
    for kill in killers:
        with contextlib.suppress(Exception):
            kill()
    return len(killers)


def hard_stopping() -> bool:
    """Whether :func:`kill_all` ran in this process: it is about to exit."""
    return _REGISTRY.stopping


def hold_if_stopping() -> None:
    """Called by a step whose process just died: if that is because flowkit is exiting now,
    wait for the exit instead of reporting the kill as the step's failure (which would be
    journaled as one)."""
    if _REGISTRY.stopping:
        threading.Event().wait()  # pragma: no cover - the process exits while we wait


def die_with_children_on_sigterm() -> None:
    """In a worker or isolated child: on SIGTERM, kill the process groups its steps started
    (shell commands run in sessions of their own, out of reach of a kill of the worker's
    group), then exit."""
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: object) -> None:
    kill_all()
    os._exit(128 + signum)


def mark_signal(arrived: bool = True) -> None:
    """Note that a real SIGINT/SIGTERM reached this process (``False``: forget it, as a new run
    starts)."""
    _REGISTRY.signalled = arrived


def signal_arrived() -> bool:
    """Whether a real SIGINT/SIGTERM reached this process: a ``KeyboardInterrupt`` is then the
    user's, not a step's own exception."""
    return _REGISTRY.signalled


def reset() -> None:
    """In a forked child: the parent's processes are not the child's to kill."""
    _REGISTRY.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset)
