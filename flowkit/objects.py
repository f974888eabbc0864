"""Step outputs stored by content: one file per distinct content, shared by the runs of a flow.

Layout, under a flow's state folder::

    <flow>/objects/<2 hex>/<hash><suffix>      e.g. objects/3f/3fa9c0...e1.pkl

The name is the content hash of the bytes (the ``hash`` of the journal record that names the
object) and the suffix of the serializer that wrote them, so equal outputs of two steps, two
fan-out instances or two runs are one file. An object is written once, atomically (a temporary
file, then a hard link to its final name, which never replaces an existing file) and never
rewritten. Writing bytes that are already stored only refreshes the object's modification time,
which tells ``flowkit clean --orphans`` that a run is using it right now.

A content hash names an object; it does not vouch for it. Whoever loads an object checks its
hash, and a pickle's signature (:mod:`flowkit.codec`), as for any file read back from disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from .errors import StateWriteError

__all__ = ["OBJECTS", "ObjectStore", "valid_object_name"]

#: The folder of a flow's objects, beside its runs.
OBJECTS = "objects"

_NAME = re.compile(r"[0-9a-f]{16,64}(\.[A-Za-z0-9_]{1,16}){1,2}")


def valid_object_name(name: str) -> bool:
    """Whether ``name`` has the shape of an object's name (a hex hash, then a suffix): a
    journal record naming anything else (a path) is not followed."""
    return _NAME.fullmatch(name) is not None


class ObjectStore:
    """The objects of one flow (``<state>/<flow>/objects``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        """Where the object ``name`` lives (whether or not it exists)."""
        return self.folder / name[:2] / name

    def put(self, name: str, blob: bytes) -> Path:
        """Store ``blob`` as object ``name`` unless it is already stored; returns its path.

        Raises:
            StateWriteError: the object cannot be written (nothing half-written is left).
        """
        path = self.path(name)
        try:
            os.utime(path)  # already stored: say it is in use, do not rewrite it
            return path
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateWriteError(path, exc) from None
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                view = memoryview(blob)
                while view:
                    n = os.write(fd, view)
                    if n == 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    view = view[n:]
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if another run stored it meanwhile: equal bytes
            except FileExistsError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                os.replace(tmp, path)  # no hard links here: a rename of equal bytes
        except OSError as exc:
            raise StateWriteError(path, exc) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return path

    def names(self) -> list[tuple[str, Path]]:
        """Every stored object (and temporary file left by a killed write), by name."""
        out: list[tuple[str, Path]] = []
        try:
            shards = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except FileNotFoundError:
            return out
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in sorted(os.scandir(shard.path), key=lambda e: e.name):
                if entry.is_file(follow_symlinks=False):
                    out.append((entry.name, Path(entry.path)))
        return out

    def size(self) -> int:
        """Bytes of all the objects."""
        total = 0
        for _, path in self.names():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total
