"""A run's state on disk: an append-only JSON Lines journal, a snapshot, a report, a lock.

Layout, under the state dir (``.flowkit/`` by default)::

    <flow>/<run_id>/journal.jsonl    one line per event that matters for resume (append only)
    <flow>/<run_id>/snapshot.json    a compact summary written at the end of a run: run status and
                                     each step's status, and how much of the journal it covers
    <flow>/<run_id>/report.json      the run report (status, timing, errors per step)
    <flow>/<run_id>/outputs/         outputs that cannot be stored inline as JSON
    <flow>/<run_id>/run.lock         held (an OS lock) while a process runs this run
    <flow>/<run_id>.previous/        the state --fresh moved aside (one generation kept)

Loading forgives exactly one kind of damage, a torn last line (a kill in the middle of a write);
anything else is a :class:`CorruptStateError` that names the file and line and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from .codec import fsync_dir, write_atomic
from .errors import CorruptStateError, RunLockedError, StateVersionError
from .keys import safe_name

__all__ = ["FORMAT", "LoadedState", "RunStore", "default_state_dir", "duration_of", "skip_status"]

FORMAT = 1
JOURNAL = "journal.jsonl"
SNAPSHOT = "snapshot.json"
REPORT = "report.json"


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
        self.dir = root / safe_name(flow) / safe_name(run_id)
        self.journal_path = self.dir / JOURNAL
        self.outputs = self.dir / "outputs"
        self.ctx_outputs = self.outputs / "ctx"
        self.logs = self.dir / "logs"
        self.fsync = fsync
        self._journal: IO[bytes] | None = None

    # --- reading --------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.journal_path.exists()

    def load(self) -> LoadedState:
        """Replay the journal (checking the snapshot agrees with it).

        Raises:
            CorruptStateError / StateVersionError: naming the file; nothing is modified.
        """
        state = LoadedState()
        self.summary()  # a damaged or newer snapshot stops us, even though we do not need it
        if self.exists():
            for rec in _read_journal(self.journal_path, 0):
                if rec.get("ev") == "run":
                    _check_format(self.journal_path, rec.get("format"))
                state.apply(rec)
        return state

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
        """Who holds the run lock right now ("pid 12, host h, since ..."), or None."""
        lock_path = self.dir / "run.lock"
        if not lock_path.exists():
            return None
        from filelock import FileLock, Timeout  # not needed by `import flowkit`

        probe = FileLock(str(lock_path), timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return self._describe_owner()
        probe.release()
        return None

    def _describe_owner(self) -> str:
        try:
            owner = orjson.loads((self.dir / "owner.json").read_bytes())
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner["started"]))
            return f"pid {owner['pid']} on host {owner['host']}, started {since}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    # --- writing --------------------------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock (an OS lock: it dies with the process). Raises RunLockedError."""
        self.dir.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock, Timeout

        flock = FileLock(str(self.dir / "run.lock"), timeout=0)
        try:
            flock.acquire()
        except Timeout:
            raise RunLockedError(self.dir.name, self._describe_owner()) from None
        try:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
            write_atomic(self.dir / "owner.json", orjson.dumps(owner), fsync=False)
            yield
        finally:
            self.close()
            flock.release()

    def archive(self) -> None:
        """Move this run's state aside (``<run>.previous``, replacing an older one): --fresh."""
        if not self.dir.exists():
            return
        backup = self.dir.with_name(self.dir.name + ".previous")
        if backup.exists():
            shutil.rmtree(backup)
        backup.mkdir()
        for child in self.dir.iterdir():
            if child.name not in ("run.lock", "owner.json"):
                child.rename(backup / child.name)

    def open(self) -> None:
        """Open the journal for appending, mending its end the way :meth:`load` read it.

        A last line without a newline is either a complete record (a kill between the record
        and its newline: load used it, so it is kept and terminated) or a torn one (load ignored
        it, so it is cut off). Either way the next record starts on a line of its own.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.exists():
            with open(self.journal_path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                start = _last_line_start(f, size)
                if start < size:
                    f.seek(start)
                    last = f.read()
                    try:
                        orjson.loads(last)
                        complete = True
                    except orjson.JSONDecodeError:
                        complete = False
                    if complete:
                        f.write(b"\n")
                    else:
                        f.truncate(start)
        created = not self.exists()
        self._journal = open(self.journal_path, "ab")  # noqa: SIM115 (closed by close())
        if created and self.fsync:  # the new file's folder entry must survive a power loss too
            fsync_dir(self.dir)

    def append(self, record: dict[str, Any]) -> None:
        """Buffer one journal line; :meth:`commit` makes it durable."""
        assert self._journal is not None, "RunStore.open() first"
        self._journal.write(orjson.dumps(record) + b"\n")

    def flush(self) -> None:
        """Hand buffered lines to the OS without fsync: for advisory records (a step started)."""
        if self._journal is not None:
            self._journal.flush()

    def commit(self) -> None:
        """Hand buffered lines to the OS (survives a process crash); fsync too in fsync mode."""
        j = self._journal
        if j is not None:
            j.flush()
            if self.fsync:
                os.fsync(j.fileno())

    def close(self) -> None:
        if self._journal is not None:
            self.commit()
            self._journal.close()
            self._journal = None

    def write_snapshot(self, summary: dict[str, Any]) -> None:
        """Write the end-of-run summary, noting how much of the journal it covers."""
        self.commit()
        snap = {"format": FORMAT, "journal_size": self.journal_path.stat().st_size, **summary}
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


def duration_of(record: Mapping[str, Any]) -> float | None:
    """A finished step's duration: ``dur`` when stored (several attempts), else end - start."""
    dur = record.get("dur")
    if isinstance(dur, (int, float)):
        return float(dur)
    start, end = record.get("start"), record.get("end")
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


def _read_journal(path: Path, offset: int) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    lines = data.split(b"\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            if i == last:  # no newline after it: a kill in the middle of a write
                return
            raise CorruptStateError(
                path,
                _line_number(path, offset) + i,
                "this line is not valid JSON and it is not the last line",
            ) from None
        if not isinstance(rec, dict):
            raise CorruptStateError(path, _line_number(path, offset) + i, "not a JSON object")
        yield rec


def _line_number(path: Path, offset: int) -> int:
    """The 1-based line number at byte ``offset`` (only computed when reporting an error)."""
    if not offset:
        return 1
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n") + 1


def _last_line_start(f: IO[bytes], size: int, chunk: int = 65536) -> int:
    """Offset just after the journal's last newline (0 if none), reading backwards by chunks."""
    end = size
    while end > 0:
        begin = max(0, end - chunk)
        f.seek(begin)
        block = f.read(end - begin)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1
        end = begin
    return 0
