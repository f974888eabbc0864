"""A run's state on disk: an append-only JSON Lines journal, a snapshot, a report, a lock.

Layout, under the state dir (``.flowkit/`` by default)::

    <flow>/<run_id>/journal.jsonl    one line per event that matters for resume (append only)
    <flow>/<run_id>/snapshot.json    a compact summary written at the end of a run: run status and
                                     each step's status, and how much of the journal it covers
    <flow>/<run_id>/report.json      the run report (status, timing, errors per step)
    <flow>/<run_id>/graph.json       the flow's steps, tiers and dependencies, written when a
                                     session starts (so the run can be shown without the code)
    <flow>/<run_id>/logs/            what each step printed and logged (``<step>.log``)
    <flow>/<run_id>/outputs/         outputs of runs written before the object store (read only)
    <flow>/<run_id>/run.lock         held (an OS lock) while a process runs this run
    <flow>/<run_id>.previous/        the state --fresh moved aside (one generation kept)
    <flow>/objects/                  outputs not stored inline, by content, shared by the runs
                                     (:mod:`flowkit.objects`)
    <flow>/cache.jsonl               the shared cache's index (:mod:`flowkit.shared`)

Every journal line is sealed with a checksum and every record is checked when read
(:mod:`flowkit.records`). Loading forgives exactly one kind of damage, a torn last line (a kill in
the middle of a write); anything else is a :class:`CorruptStateError` that names the file and line
and changes nothing. A write the disk refuses (full, read-only, not a folder) is a
:class:`StateWriteError`: the journal is cut back to its last complete record and temporary files
are removed, so the run resumes once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .codec import fsync_dir, stored_name, write_all, write_atomic
from .errors import CorruptStateError, StateVersionError, StateWriteError
from .keys import digest, safe_name
from .objects import OBJECTS, ObjectStore
from .records import read_journal, records_end, seal
from .runlock import RunLock

__all__ = [
    "FORMAT",
    "LoadedState",
    "RunStore",
    "check_folder",
    "default_state_dir",
    "duration_of",
    "skip_status",
]

#: The state format this flowkit writes. 2: journal lines sealed with a checksum, pickled outputs
#: signed. 3: outputs are objects of the flow's object store (``obj`` in ``done`` records).
#: Formats 1 (no seals, no signatures) and 2 are still read; a flowkit that reads an older format
#: only refuses a newer one (asking for an upgrade) instead of misreading its records.
FORMAT = 3
JOURNAL = "journal.jsonl"
SNAPSHOT = "snapshot.json"
REPORT = "report.json"
GRAPH = "graph.json"


def default_state_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """``given``, else ``$FLOWKIT_STATE_DIR``, else ``.flowkit`` in the working directory."""
    if given is not None:
        return Path(given)
    return Path(os.environ.get("FLOWKIT_STATE_DIR") or ".flowkit")


@dataclass(slots=True)
class LoadedState:
    """What a run's journal says.

    ``steps``: the last finished record of each step (what resume decisions use).
    ``session``: the latest session's start/cached/skip record of each step not finished since.
    ``retries``: the latest session's failed attempts that were retried (error, delay), by step.
    """

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    session: dict[str, dict[str, Any]] = field(default_factory=dict)
    retries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    headers: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, rec: dict[str, Any]) -> None:
        ev = rec.get("ev")
        if ev == "done":
            name = rec["step"]
            self.steps[name] = rec
            self.session.pop(name, None)
        elif ev == "cached" and "steps" in rec:  # the steps restored together
            for name in rec["steps"]:
                self.session[name] = rec
        elif ev in ("start", "cached", "skip"):
            self.session[rec["step"]] = rec
        elif ev == "retry":
            self.retries.setdefault(rec["step"], []).append(rec)
        elif ev == "run":
            self.headers.append(rec)
            self.end = None
            self.session.clear()
            self.retries.clear()
            self.notifications.clear()
        elif ev == "end":
            self.end = rec
        elif ev == "notify":
            self.notifications.append(rec)


class RunStore:
    """The files of one run. Writing requires holding :meth:`lock`."""

    def __init__(self, root: Path, flow: str, run_id: str, *, fsync: bool = False) -> None:
        self.root = root
        folder = safe_name(run_id)
        if folder == OBJECTS:  # the flow's object store has that name: a run gets another
            folder = f"{OBJECTS}-{digest(run_id)[:8]}"
        self.dir = root / safe_name(flow) / folder
        self.objects = ObjectStore(self.dir.parent / OBJECTS)  # shared by the flow's runs
        self.journal_path = self.dir / JOURNAL
        self.outputs = self.dir / "outputs"
        self.ctx_outputs = self.outputs / "ctx"
        self.logs = self.dir / "logs"
        self.fsync = fsync
        self._fd: int | None = None  # the journal, opened for appending
        self._buf: list[bytes] = []  # sealed lines not yet handed to the OS
        self._size = 0  # the journal's size after the last complete write

    # --- reading --------------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the run has a journal.

        Raises:
            StateWriteError: a file stands where the state folder should be.
        """
        if self.journal_path.exists():
            return True
        check_folder(self.dir)
        return False

    def load(self) -> LoadedState:
        """Replay the journal (checking the snapshot agrees with it).

        Raises:
            CorruptStateError / StateVersionError: naming the file; nothing is modified.
            StateError: the state folder is in the way (a file) or cannot be read.
        """
        state = LoadedState()
        self.summary()  # a damaged or newer snapshot stops us, even though we do not need it
        if self.exists():
            steps, session = state.steps, state.session
            for rec in read_journal(self.journal_path):
                ev = rec["ev"]
                if ev == "done":  # most lines: LoadedState.apply's first case, without the call
                    name = rec["step"]
                    steps[name] = rec
                    if session:
                        session.pop(name, None)
                    continue
                if ev == "run":
                    _check_format(self.journal_path, rec["format"])
                state.apply(rec)
        return state

    def orphaned(self) -> list[str]:
        """What the run's folder holds beside an empty or missing journal (outputs, a report...).

        Those files belong to steps whose record was lost: their results cannot be trusted.
        """
        if self.exists() and self.journal_path.stat().st_size > 0:
            return []
        found = []
        for name in (SNAPSHOT, REPORT, "outputs", "logs"):
            path = self.dir / name
            if path.is_file() or (path.is_dir() and any(path.iterdir())):
                found.append(name)
        return found

    def summary(self) -> dict[str, Any] | None:
        """The snapshot written at the end of the last run (None if there is none).

        Raises:
            CorruptStateError: it does not parse, or covers more journal than there is.
            StateVersionError: it was written by a newer flowkit.
        """
        snap_path = self.dir / SNAPSHOT
        if not snap_path.exists():
            return None
        snap = _parse_json_file(snap_path)
        _check_format(snap_path, snap.get("format"))
        covered = snap.get("journal_size", 0)
        size = self.journal_path.stat().st_size if self.exists() else 0
        if not isinstance(covered, int) or covered > size:
            raise CorruptStateError(
                snap_path, None, f"it covers {covered} bytes of {JOURNAL}, which has {size}"
            )
        return snap

    def holder(self) -> str | None:
        """Who holds the run lock right now ("pid 12, host h, since ..."), or None.

        Only reads: it creates nothing, and works on a state folder it cannot write.
        """
        return RunLock(self.dir).holder()

    def file_of(self, record: Mapping[str, Any], ctx: bool = False) -> Path | None:
        """The file holding a ``done`` record's output (``ctx``: its ``ctx`` writes): an object,
        or for a run written before the object store, a file of its ``outputs/``; None when the
        value is inline (or there is none)."""
        if ctx:
            inner = record.get("ctx")
            if not isinstance(inner, Mapping):
                return None
            record = inner
        name = stored_name(record)
        if name is None:
            return None
        if "obj" in record:
            return self.objects.path(name)
        return (self.ctx_outputs if ctx else self.outputs) / name

    # --- writing --------------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock (an OS lock: it dies with the process); the journal is closed
        before it is released.

        Raises:
            RunLockedError: another live process holds it.
            StateWriteError: the run's folder cannot be created or written.
        """
        check_folder(self.dir)
        with RunLock(self.dir).hold():
            try:
                yield
            finally:
                self.close()

    def archive(self) -> None:
        """Move this run's state aside (``<run>.previous``, replacing an older one): --fresh."""
        if not self.dir.exists():
            return
        backup = self.dir.with_name(self.dir.name + ".previous")
        try:
            if backup.exists():
                shutil.rmtree(backup)
            backup.mkdir()
            for child in self.dir.iterdir():
                if child.name not in ("run.lock", "owner.json"):
                    child.rename(backup / child.name)
        except OSError as exc:
            raise StateWriteError(backup, exc) from None

    def open(self) -> None:
        """Open the journal for appending, mending its end the way :meth:`load` read it.

        A last line without a newline is either a complete record (a kill between the record
        and its newline: load used it, so it is kept and terminated) or a torn one (load ignored
        it, so it is cut off). Either way the next record starts on a line of its own.

        Raises:
            StateWriteError: the journal cannot be created or mended.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            created = not self.exists()
            fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise StateWriteError(self.journal_path, exc) from None
        try:
            with os.fdopen(os.dup(fd), "rb") as f:
                size, (end, unterminated) = f.seek(0, os.SEEK_END), records_end(f)
            if unterminated:
                write_all(fd, b"\n")
                size += 1
            elif end < size:
                os.ftruncate(fd, end)
                size = end
            if created and self.fsync:  # the new file's folder entry must survive a power loss
                fsync_dir(self.dir)
        except OSError as exc:
            os.close(fd)
            raise StateWriteError(self.journal_path, exc) from None
        self._fd, self._size = fd, size

    def append(self, record: dict[str, Any]) -> None:
        """Buffer one journal line (sealed with its checksum); :meth:`commit` makes it durable."""
        assert self._fd is not None, "RunStore.open() first"
        self._buf.append(seal(record))

    def flush(self) -> None:
        """Hand buffered lines to the OS without fsync: for advisory records (a step started)."""
        if self._buf and self._fd is not None:
            self._write()

    def commit(self) -> None:
        """Hand buffered lines to the OS (survives a process crash); fsync too in fsync mode.

        Raises:
            StateWriteError: the disk refused the lines; the journal is cut back to its last
                complete record and this store writes nothing more.
        """
        if self._fd is None:
            return
        if self._buf:
            self._write()
        if self.fsync:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._fail(exc)

    def _write(self) -> None:
        assert self._fd is not None
        data = b"".join(self._buf) if len(self._buf) > 1 else self._buf[0]
        self._buf.clear()
        try:
            write_all(self._fd, data)
        except OSError as exc:
            self._fail(exc)
        self._size += len(data)

    def _fail(self, exc: OSError) -> None:
        """A write failed: cut the journal back to its last complete line, stop writing, raise."""
        fd, self._fd = self._fd, None
        self._buf.clear()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)  # needs no space; a torn tail would be cut anyway
            with contextlib.suppress(OSError):
                os.close(fd)
        raise StateWriteError(self.journal_path, exc)

    def close(self) -> None:
        """Commit what is buffered and close the journal (quietly if it already failed)."""
        if self._fd is not None:
            try:
                self.commit()
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None

    def write_snapshot(self, summary: dict[str, Any]) -> None:
        """Write the end-of-run summary, noting how much of the journal it covers."""
        self.commit()
        st = self.journal_path.stat()
        snap = {
            "format": FORMAT,
            "journal_size": st.st_size,
            "journal_mtime_ns": st.st_mtime_ns,  # with the size: the journal is as summarized
            **summary,
        }
        write_atomic(self.dir / SNAPSHOT, orjson.dumps(snap), fsync=self.fsync)

    def append_notes(self, records: list[dict[str, Any]]) -> None:
        """Append records after a run ended (its alerts), keeping the snapshot current with them.

        Requires holding :meth:`lock`; the journal is opened (and mended) as for a run.
        """
        self.open()
        for rec in records:
            self.append(rec)
        self.commit()
        snap_path = self.dir / SNAPSHOT
        if snap_path.exists():
            snap = _parse_json_file(snap_path)
            snap["journal_size"] = self.journal_path.stat().st_size
            write_atomic(snap_path, orjson.dumps(snap), fsync=self.fsync)

    def write_report(self, report: dict[str, Any]) -> None:
        write_atomic(self.dir / REPORT, orjson.dumps(report), fsync=self.fsync)

    def write_graph(self, shape: dict[str, Any]) -> None:
        """Save the flow's shape (``GraphShape.to_json()``) beside the journal, for displays.

        Raises:
            StateWriteError: the disk refused it.
        """
        try:
            write_atomic(self.dir / GRAPH, orjson.dumps(shape), fsync=False)
        except OSError as exc:
            raise StateWriteError(self.dir / GRAPH, exc) from None


def check_folder(folder: Path) -> None:
    """Raise StateWriteError if a file stands where ``folder`` (or one of its parents) should be."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise StateWriteError(
                    path, NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder")
                )
            return


def duration_of(record: Mapping[str, Any]) -> float | None:
    """A finished step's duration: ``dur`` when stored (several attempts), else end - start."""
    start, end = record.get("start"), record.get("end")
    if "dur" not in record and start.__class__ is float and end.__class__ is float:
        return end - start  # the common case: one attempt
    dur = record.get("dur")
    if isinstance(dur, (int, float)):
        return float(dur)
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return float(end) - float(start)
    return None


def skip_status(record: Mapping[str, Any]) -> str:
    """The state a ``skip`` record gives its step: ``upstream_failed`` when it says so, else
    ``skipped`` (older journals never say so; an unknown value is read as a plain skip)."""
    return "upstream_failed" if record.get("status") == "upstream_failed" else "skipped"


def _check_format(path: Path, found: Any) -> None:
    if isinstance(found, int) and found > FORMAT:
        raise StateVersionError(path, found, FORMAT)


def _parse_json_file(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise CorruptStateError(path, None, f"it is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CorruptStateError(path, None, "it does not hold a JSON object")
    return data
