"""How step outputs are stored: inline JSON when that round-trips exactly, an object otherwise.

A value goes inline only if ``orjson`` encodes it and decoding gives back an equal value of the
same shape (tuples, NaN, datetimes, UUIDs, str/int subclasses, ... do not qualify), so a resumed
run hands downstream steps exactly what a fresh run would. Everything else goes through a
:class:`Serializer` (pickle by default) to an object of the flow's object store
(:mod:`flowkit.objects`), named by its content hash: the journal keeps the object's name (which
carries the serializer's suffix), and a missing or altered object invalidates the step. Runs
written before the object store keep their outputs in the run's ``outputs/`` folder (a record
with ``ref`` instead of ``obj``); they are read from there as before.

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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path
from typing import Any, Protocol

import orjson

from .errors import StateWriteError
from .keys import digest
from .objects import ObjectStore, valid_object_name
from .secret import sign

__all__ = [
    "Encoded",
    "OutputMissingError",
    "OutputUntrustedError",
    "PickleSerializer",
    "Serializer",
    "check_inline",
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

    def __init__(self, path: Path, what: str = "output file") -> None:
        self.path = path
        super().__init__(
            f"{what} {path} is not signed with this user's key, so it was not unpickled "
            "(state copied from elsewhere, or altered)"
        )


@dataclass(slots=True)
class Encoded:
    """A value ready for the journal: inline JSON bytes, or the name of its object; its hash
    (never changed once made; one is made per output, so not ``frozen``, which costs more)."""

    hash: str
    inline: bytes | None = None
    obj: str | None = None
    mac: str | None = None  # the signature of an object for the serializer

    def fields(self) -> dict[str, Any]:
        if self.inline is not None:
            return {"out": orjson.Fragment(self.inline), "hash": self.hash}
        if self.mac is not None:
            return {"obj": self.obj, "hash": self.hash, "mac": self.mac}
        return {"obj": self.obj, "hash": self.hash}


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


#: JSON values larger than this go to an object (``<hash>.json``) instead of the journal line,
#: so the journal stays quick to load however big the outputs are.
INLINE_MAX = 64 * 1024

_SUFFIX = re.compile(r"(\.[A-Za-z0-9_]{1,16}){1,2}")


def encode(value: Any, objects: ObjectStore, serializer: Serializer) -> Encoded:
    """Encode one value; stores an object (once per content) when it cannot or should not go
    inline.

    Raises:
        StateWriteError: the object cannot be written (disk full, read-only folder).
        Exception: whatever the serializer raises for a value it cannot encode.
    """
    data = inline_bytes(value)
    if data is not None and len(data) <= INLINE_MAX:  # digest(data), spelled out: per output
        return Encoded(blake2b(data + b"\x00", digest_size=12).hexdigest(), data)
    mac = None
    if data is not None:  # exact JSON, but big: a JSON object, read back with orjson
        blob, suffix = data, ".json"
    else:
        blob, suffix = serializer.dumps(value), serializer.suffix
        if _SUFFIX.fullmatch(suffix) is None:
            suffix = ".bin"  # not usable in a file name; read back by the step's serializer
    h = digest(blob)
    name = h + suffix
    if suffix != ".json":
        mac = sign(name, blob)
    objects.put(name, blob)
    return Encoded(h, obj=name, mac=mac)


def decode(
    record: Mapping[str, Any], folder: Path, serializer: Serializer, objects: ObjectStore
) -> Any:
    """The value a journal record holds (``folder``: the run's ``outputs/``, where runs written
    before the object store keep their files).

    Raises:
        OutputMissingError: an object (or side file) is missing or altered, or an inline value
            does not match its hash (OutputUntrustedError: a file for the serializer is not
            signed with this user's key; it is not unpickled).
    """
    name = stored_name(record)
    if name is None:
        value = record.get("out")
        check_inline(record, value)
        return value
    blob = _side_file(record, folder, objects)
    if name.endswith(".json") and serializer.suffix != ".json":
        return orjson.loads(blob)
    return serializer.loads(blob)


def stored_name(record: Mapping[str, Any]) -> str | None:
    """The name of the file holding a record's value (an object, or an older run's side file),
    or None when the value is inline."""
    name = record.get("obj")
    if name is None:
        name = record.get("ref")
    return None if name is None else str(name)


def check_inline(record: Mapping[str, Any], value: Any) -> None:
    """Check an inline value against its record's hash.

    Raises:
        OutputMissingError: it does not match (the journal line was altered).
    """
    try:
        data = orjson.dumps(value, option=_OPTS)
    except orjson.JSONEncodeError:  # cannot happen for parsed JSON; be safe anyway
        data = b""
    # digest(data), spelled out: this runs for every restored step
    if blake2b(data + b"\x00", digest_size=12).hexdigest() != record.get("hash"):
        raise OutputMissingError(
            "the inline output in the journal was altered (it does not match its hash)"
        )


def _side_file(record: Mapping[str, Any], folder: Path, objects: ObjectStore) -> bytes:
    if "obj" in record:
        name = str(record["obj"])
        if not valid_object_name(name) or not name.startswith(str(record.get("hash"))):
            raise OutputMissingError(f"the journal names an object {name!r} that is not one")
        path = objects.path(name)
        what = "object"
    else:
        name = str(record["ref"])
        path = folder / name
        what = "output file"
        if Path(name).name != name:
            raise OutputMissingError(f"the journal names an output file {name!r} outside {folder}")
    try:
        blob = path.read_bytes()
    except OSError:
        raise OutputMissingError(f"{what} {path} is missing") from None
    if digest(blob) != record.get("hash"):
        raise OutputMissingError(f"{what} {path} was altered (its hash does not match)")
    if not name.endswith(".json"):
        mac = record.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, sign(name, blob)):
            raise OutputUntrustedError(path, what)
    return blob


def check_side_files(record: Mapping[str, Any], outputs: Path, objects: ObjectStore) -> str | None:
    """Why a finished step's stored output (or ctx writes) cannot be restored, or None."""
    try:
        for rec, folder in ((record, outputs), (record.get("ctx"), outputs / "ctx")):
            if not isinstance(rec, Mapping):
                continue
            if stored_name(rec) is not None:
                _side_file(rec, folder, objects)
            else:
                check_inline(rec, rec.get("out"))
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
