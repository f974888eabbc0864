"""Worker processes that die with the process that started them.

A process-pool worker (or an isolated attempt) must not outlive flowkit: after a ``kill -9`` of
the run it would go on running a step nobody waits for, and, being a fork, it would hold the
run's journal and lock open. :func:`worker_init` runs first in each such worker:

- it lets go of the files it inherited from under the state folder (they become ``/dev/null``),
  so that the run lock is held by the flowkit process alone;
- on Linux it asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``);
- everywhere, a watchdog thread checks the parent every half second, in case the step holds
  the main thread in native code where no signal handler can run.

Either way the worker first kills the process groups of the shell commands it is running
(those registered with :mod:`flowkit.stopping`), then exits. The SIGTERM handler that does so is
the caller's: :func:`flowkit.stopping.die_with_children_on_sigterm`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

from . import stopping

__all__ = ["WATCH_INTERVAL_S", "release_state_files", "worker_init"]

#: How often the watchdog looks at the parent process.
WATCH_INTERVAL_S = 0.5

_PR_SET_PDEATHSIG = 1


def worker_init(parent_pid: int, state_dir: str | None) -> None:
    """Make this worker process die with ``parent_pid``; release inherited state files.

    Meant as a ``ProcessPoolExecutor`` initializer (or the first call of a forked child).
    """
    if state_dir is not None:
        release_state_files(state_dir)
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        _ask_parent_death_signal()
    threading.Thread(
        target=_watch, args=(parent,), name="flowkit-parent-watchdog", daemon=True
    ).start()
    if os.getppid() != parent or not _alive(parent_pid):
        _die()  # the parent died before we could ask to be told


def release_state_files(state_dir: str) -> int:
    """Point every inherited descriptor of a file under ``state_dir`` at ``/dev/null``.

    ``dup2`` rather than ``close``: objects copied from the parent that still own those
    descriptor numbers can close them later without closing someone else's file. Returns how
    many descriptors were released.
    """
    root = os.path.realpath(state_dir)
    released = 0
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in _open_fds():
            if fd <= 2 or fd == null:
                continue
            path = _fd_path(fd)
            if path is not None and (path == root or path.startswith(root + os.sep)):
                with contextlib.suppress(OSError):
                    os.dup2(null, fd)
                    released += 1
    finally:
        os.close(null)
    return released


def _open_fds() -> list[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return [int(n) for n in os.listdir(folder) if n.isdigit()]
    return []


def _fd_path(fd: int) -> str | None:
    with contextlib.suppress(OSError):
        if os.path.isdir("/proc/self/fd"):
            return os.readlink(f"/proc/self/fd/{fd}")
        import fcntl

        get_path = getattr(fcntl, "F_GETPATH", None)
        if get_path is not None:  # macOS
            raw = fcntl.fcntl(fd, get_path, bytes(1024))
            return os.fsdecode(raw.rstrip(b"\0"))
    return None


def _ask_parent_death_signal() -> None:
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_INTERVAL_S)
    _die()


def _die(code: int = 1) -> None:
    stopping.kill_all()
    os._exit(code)
