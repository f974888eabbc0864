"""How step outputs are stored: inline JSON when that round-trips exactly, a side file otherwise.

A value goes inline only if ``orjson`` encodes it and decoding gives back an equal value of the
same shape (tuples, NaN, datetimes, UUIDs, str/int subclasses, ... do not qualify), so a resumed
run hands downstream steps exactly what a fresh run would. Everything else goes through a
:class:`Serializer` (pickle by default) to a file under the run's ``outputs/`` folder; the journal
keeps the file's name and its content hash, and a missing or altered file invalidates the step.

Nothing read back is trusted unchecked: an inline value must match its recorded hash, and a file
handed to the serializer (a pickle runs code when loaded) must carry a valid signature made with
the user's key (:mod:`flowkit.secret`), which lives outside the state folder. A value that fails
a check is never decoded; the step re-runs.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from .errors import StateWriteError
from .keys import digest
from .secret import sign

__all__ = [
    "Encoded",
    "OutputMissingError",
    "OutputUntrustedError",
    "PickleSerializer",
    "Serializer",
    "decode",
    "encode",
    "write_all",
    "write_atomic",
]

_OPTS = (
    orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _refuse(value: Any) -> Any:
    raise TypeError


class Serializer(Protocol):
    """Stores values orjson cannot hold exactly. ``suffix`` names the files it writes."""

    suffix: str

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class PickleSerializer:
    """The default serializer: pickle, highest protocol."""

    suffix = ".pkl"

    def dumps(self, value: Any) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class OutputMissingError(Exception):
    """A stored output cannot be restored: a side file is missing, or a value fails its check."""


class OutputUntrustedError(OutputMissingError):
    """A side file for the serializer lacks a valid signature: it was not unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"output file {path} is not signed with this user's key, so it was not unpickled "
            "(state copied from elsewhere, or altered)"
        )


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value ready for the journal: inline JSON bytes, or a side-file reference; and its hash."""

    hash: str
    inline: bytes | None = None
    ref: str | None = None
    mac: str | None = None  # the signature of a side file for the serializer

    def fields(self) -> dict[str, Any]:
        if self.inline is not None:
            return {"out": orjson.Fragment(self.inline), "hash": self.hash}
        if self.mac is not None:
            return {"ref": self.ref, "hash": self.hash, "mac": self.mac}
        return {"ref": self.ref, "hash": self.hash}


def inline_bytes(value: Any) -> bytes | None:
    """The JSON bytes of ``value`` when they decode back to an equal value, else None."""
    if value is None:
        return b"null"
    try:
        data = orjson.dumps(value, default=_refuse, option=_OPTS)
    except (TypeError, orjson.JSONEncodeError):
        return None
    t = type(value)
    if t is str or t is int or t is bool:
        return data
    try:
        return data if orjson.loads(data) == value else None
    except Exception:  # an __eq__ that raises (numpy-like): not ours to judge
        return None


#: JSON values larger than this go to a side file (``<step>.json``) instead of the journal line,
#: so the journal stays quick to load however big the outputs are.
INLINE_MAX = 64 * 1024


def encode(value: Any, folder: Path, stem: str, serializer: Serializer) -> Encoded:
    """Encode one value; writes a side file (atomically) when it cannot or should not go inline.

    Raises:
        StateWriteError: the side file cannot be written (disk full, read-only folder).
        Exception: whatever the serializer raises for a value it cannot encode.
    """
    data = inline_bytes(value)
    if data is not None and len(data) <= INLINE_MAX:
        return Encoded(digest(data), inline=data)
    mac = None
    if data is not None:  # exact JSON, but big: a JSON side file, read back with orjson
        blob, name = data, stem + ".json"
    else:
        blob, name = serializer.dumps(value), stem + serializer.suffix
        if not name.endswith(".json"):
            mac = sign(name, blob)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateWriteError(folder, exc) from None
    write_atomic(folder / name, blob, fsync=False)
    return Encoded(digest(blob), ref=name, mac=mac)


def decode(record: Mapping[str, Any], folder: Path, serializer: Serializer) -> Any:
    """The value a journal record holds.

    Raises:
        OutputMissingError: a side file is missing or altered, or an inline value does not match
            its hash (OutputUntrustedError: a file for the serializer is not signed with this
            user's key; it is not unpickled).
    """
    if "ref" not in record:
        value = record.get("out")
        _check_inline(record, value)
        return value
    blob = _side_file(record, folder)
    if str(record["ref"]).endswith(".json") and serializer.suffix != ".json":
        return orjson.loads(blob)
    return serializer.loads(blob)


def _check_inline(record: Mapping[str, Any], value: Any) -> None:
    try:
        data = orjson.dumps(value, option=_OPTS)
    except orjson.JSONEncodeError:  # cannot happen for parsed JSON; be safe anyway
        data = b""
    if digest(data) != record.get("hash"):
        raise OutputMissingError(
            "the inline output in the journal was altered (it does not match its hash)"
        )


def _side_file(record: Mapping[str, Any], folder: Path) -> bytes:
    name = str(record["ref"])
    path = folder / name
    try:
        blob = path.read_bytes()
    except OSError:
        raise OutputMissingError(f"output file {path} is missing") from None
    if digest(blob) != record.get("hash"):
        raise OutputMissingError(f"output file {path} was altered (its hash does not match)")
    if not name.endswith(".json"):
        mac = record.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, sign(name, blob)):
            raise OutputUntrustedError(path)
    return blob


def check_side_files(record: Mapping[str, Any], outputs: Path) -> str | None:
    """Why a finished step's stored output (or ctx writes) cannot be restored, or None."""
    try:
        for rec, folder in ((record, outputs), (record.get("ctx"), outputs / "ctx")):
            if not isinstance(rec, Mapping):
                continue
            if "ref" in rec:
                _side_file(rec, folder)
            else:
                _check_inline(rec, rec.get("out"))
    except OutputMissingError as exc:
        return str(exc)
    return None


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd`` (``os.write`` may write less)."""
    n = os.write(fd, data)
    if n == len(data):  # the usual case: all at once
        return
    view = memoryview(data)[n:]
    while view:
        n = os.write(fd, view)
        if n == 0:  # a write that makes no progress: report it like a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def write_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    With ``fsync``, the data and then the folder (which holds the rename) reach the disk, so the
    new file survives a power loss too.

    Raises:
        StateWriteError: the file cannot be written (the temporary file is removed first).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    except OSError as exc:
        raise StateWriteError(path, exc) from None
    try:
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateWriteError(path, exc) from None
    if fsync:
        fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (new and renamed files) durable; a no-op where unsupported."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
