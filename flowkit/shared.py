"""The shared cache: results any run of a flow may reuse, by cache key.

A step with ``cache="shared"`` (or in a flow with ``cache="shared"``) that finds nothing usable
in its own run's journal looks its cache key up here. The index is one file per flow,
``<flow>/cache.jsonl``: one line per success of a shared step, appended (never rewritten during
a run) and sealed with a checksum as journal lines are::

    {"key": "...", "run": "<run id>", "step": "<step>", "rec": {<its done record>}, "crc": N}

The last line of a key wins. The index is only a cache: a torn last line is ignored, a damaged
line is ignored with a warning, and an entry whose output is missing or fails its checks (its
hash, a pickle's signature) is a miss, so the step runs. Nothing in it is trusted more than a
journal record: its output is checked exactly as a restored output is. ``flowkit clean
--orphans`` rewrites it (atomically) without the entries whose objects were deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .codec import write_all, write_atomic
from .errors import StateWriteError
from .objects import OBJECTS, ObjectStore
from .records import RecordError, seal, unseal, validate

__all__ = ["INDEX", "SharedCache"]

log = logging.getLogger("flowkit")

#: The shared cache's index, in a flow's state folder.
INDEX = "cache.jsonl"


class SharedCache:
    """The shared cache index of one flow (``flow_dir``: ``<state>/<flow>``)."""

    def __init__(self, flow_dir: Path) -> None:
        self.path = flow_dir / INDEX
        self.objects = ObjectStore(flow_dir / OBJECTS)
        self._entries: dict[str, dict[str, Any]] | None = None

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The latest entry for ``key`` (``key``, ``run``, ``step``, ``rec``), or None.

        The index is read once, at the first lookup.
        """
        if self._entries is None:
            self._entries = self._read()
        return self._entries.get(key)

    def add(self, key: str, run_id: str, step: str, record: Mapping[str, Any]) -> None:
        """Append an entry: ``step`` of run ``run_id`` succeeded with ``record`` for ``key``.

        Raises:
            StateWriteError: the index cannot be written.
        """
        line = seal({"key": key, "run": run_id, "step": step, "rec": record})
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise StateWriteError(self.path, exc) from None
        try:
            write_all(fd, line)  # one write: concurrent runs append whole lines
        except OSError as exc:
            raise StateWriteError(self.path, exc) from None
        finally:
            os.close(fd)

    def compact(self) -> int:
        """Rewrite the index with the latest entry of each key whose stored output still exists;
        returns how many entries were dropped."""
        if not self.path.exists():
            return 0
        entries = self._read()
        kept = [
            e for e in entries.values() if all(self.objects.path(n).exists() for n in _objects(e))
        ]
        try:
            total = sum(1 for _ in self.path.open("rb"))
        except OSError:
            total = len(entries)
        dropped = total - len(kept)
        if not kept:
            self.path.unlink(missing_ok=True)
        elif dropped:
            write_atomic(self.path, b"".join(seal(e) for e in kept), fsync=False)
        return dropped

    def _read(self) -> dict[str, dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return entries
        except OSError as exc:
            log.warning(
                "cannot read the shared cache index %s (%s); it is not used",
                self.path,
                exc,
            )
            return entries
        lines = data.split(b"\n")
        if lines and lines[-1] != b"":
            lines[-1] = b""  # a torn last line: an append cut short
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                entry = _parse(line)
            except RecordError as exc:
                log.warning(
                    "shared cache index %s, line %d: %s; the entry is ignored",
                    self.path,
                    number,
                    exc,
                )
                continue
            entries[entry["key"]] = entry
        return entries


def _parse(line: bytes) -> dict[str, Any]:
    entry, _ = unseal(line, "this line has no checksum")
    rec = entry.get("rec")
    if not all(isinstance(entry.get(k), str) for k in ("key", "run", "step")) or not isinstance(
        rec, dict
    ):
        raise RecordError("it lacks its key, run, step or record")
    with contextlib.suppress(KeyError):
        rec.pop("ev")
    validate({"ev": "done", **rec})
    if rec.get("status") != "succeeded" or rec.get("key") != entry["key"]:
        raise RecordError("its record is not a success with its key")
    return entry


def _objects(entry: Mapping[str, Any]) -> list[str]:
    rec = entry["rec"]
    return [str(r["obj"]) for r in (rec, rec.get("ctx")) if isinstance(r, Mapping) and "obj" in r]
