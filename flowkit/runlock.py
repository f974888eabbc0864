"""The lock of one run: an OS lock on ``<run>/run.lock`` held while a process runs the run
(it dies with the process), and ``owner.json`` saying who holds it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from .codec import write_atomic
from .errors import RunLockedError, StateWriteError

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows): probe the lock with filelock instead
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock"]


class RunLock:
    """The lock of the run whose folder is ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "run.lock"

    def holder(self) -> str | None:
        """Who holds the lock right now ("pid 12, host h, since ..."), or None. Only reads."""
        if not self.path.exists():
            return None
        if fcntl is None:  # pragma: no cover
            from filelock import FileLock, Timeout

            probe = FileLock(str(self.path), timeout=0)
            try:
                probe.acquire()
            except Timeout:
                return self.owner()
            probe.release()
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock filelock takes
        except OSError:
            return self.owner()
        finally:
            os.close(fd)  # closing releases our probe
        return None

    def owner(self) -> str:
        """Who took the lock, as ``owner.json`` says ("another process" when it cannot say)."""
        try:
            owner = orjson.loads((self.folder / "owner.json").read_bytes())
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["started"]))
            return f"pid {owner['pid']} on host {owner['host']}, started {since}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Take the lock (creating the folder), or raise at once.

        Raises:
            RunLockedError: another live process holds it.
            StateWriteError: the folder cannot be created or written.
        """
        from filelock import FileLock, Timeout  # not needed by `import flowkit`

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            flock = FileLock(str(self.path), timeout=0)
            flock.acquire()
        except Timeout:
            raise RunLockedError(self.folder.name, self.owner()) from None
        except OSError as exc:
            raise StateWriteError(self.path if self.folder.is_dir() else self.folder, exc) from None
        try:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            write_atomic(self.folder / "owner.json", orjson.dumps(owner), fsync=False)
            yield
        finally:
            flock.release()
