"""How step outputs are stored: inline JSON when that round-trips exactly, a side file otherwise.

A value goes inline only if ``orjson`` encodes it and decoding gives back an equal value of the
same shape (tuples, NaN, datetimes, UUIDs, str/int subclasses, ... do not qualify), so a resumed
run hands downstream steps exactly what a fresh run would. Everything else goes through a
:class:`Serializer` (pickle by default) to a file under the run's ``outputs/`` folder; the journal
keeps the file's name and its content hash, and a missing or altered file invalidates the step.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from .keys import digest

__all__ = ["Encoded", "OutputMissingError", "PickleSerializer", "Serializer", "decode", "encode"]

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
    """A side file of a stored output is missing or does not match its hash."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value ready for the journal: inline JSON bytes, or a side-file reference; and its hash."""

    hash: str
    inline: bytes | None = None
    ref: str | None = None

    def fields(self) -> dict[str, Any]:
        if self.inline is not None:
            return {"out": orjson.Fragment(self.inline), "hash": self.hash}
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
    """Encode one value; writes a side file (atomically) when it cannot or should not go inline."""
    data = inline_bytes(value)
    if data is not None and len(data) <= INLINE_MAX:
        return Encoded(digest(data), inline=data)
    if data is not None:  # exact JSON, but big: a JSON side file, read back with orjson
        blob, name = data, stem + ".json"
    else:
        blob, name = serializer.dumps(value), stem + serializer.suffix
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / name, blob, fsync=False)
    return Encoded(digest(blob), ref=name)


def decode(record: Mapping[str, Any], folder: Path, serializer: Serializer) -> Any:
    """The value a journal record holds; raises OutputMissingError for a bad side file."""
    if "ref" not in record:
        return record.get("out")
    blob = _side_file(record, folder)
    if str(record["ref"]).endswith(".json") and serializer.suffix != ".json":
        return orjson.loads(blob)
    return serializer.loads(blob)


def _side_file(record: Mapping[str, Any], folder: Path) -> bytes:
    path = folder / str(record["ref"])
    try:
        blob = path.read_bytes()
    except OSError:
        raise OutputMissingError(f"output file {path} is missing") from None
    if digest(blob) != record.get("hash"):
        raise OutputMissingError(f"output file {path} was altered (its hash does not match)")
    return blob


def check_side_files(record: Mapping[str, Any], outputs: Path) -> str | None:
    """Why a finished step's stored output (or ctx writes) cannot be restored, or None."""
    try:
        if "ref" in record:
            _side_file(record, outputs)
        ctx = record.get("ctx")
        if isinstance(ctx, Mapping) and "ref" in ctx:
            _side_file(ctx, outputs / "ctx")
    except OutputMissingError as exc:
        return str(exc)
    return None


def write_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    With ``fsync``, the data and then the folder (which holds the rename) reach the disk, so the
    new file survives a power loss too.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
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
