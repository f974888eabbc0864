"""Following a run while it happens: its journal read from a remembered offset, step by step.

A :class:`RunTail` reads only the bytes appended since its last look (``tail -f``), applies the
new records to a :class:`~flowkit.store.LoadedState` (the same state ``flowkit status`` and the
report read) and to an :class:`~flowkit.attempts.AttemptLog` (every attempt of the latest
session, drawn as one bar each), and says which steps changed, so a page is sent only their
new rows.

A :class:`LogTail` does the same for one step's log file.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from ..attempts import AttemptLog
from ..graph import GraphShape
from ..report import RunReport, StepRow, collect, step_rows
from ..report.trace import user_frames
from ..stepview import split_instance
from ..store import GRAPH, JOURNAL, LoadedState
from .actions import was_cancelled_in

__all__ = ["LogTail", "RunTail", "Update", "process_alive", "row_json", "shape_of"]

_ROW_FIELDS = tuple(f.name for f in fields(StepRow))


class JournalReset(Exception):
    """The journal shrank or was replaced (``--fresh``): it must be read again from the start."""


@dataclass(slots=True)
class Update:
    """What one look at the journal found."""

    reset: bool = False  # a new session began, or the journal was replaced: start over
    steps: set[str] = field(default_factory=set)  # steps (and instances) whose row changed
    run: bool = False  # the run's own status changed (ended, or its process went away)


class RunTail:
    """A run's journal followed from a remembered offset; see the module docstring.

    Args:
        run_dir: the run's folder (``<state dir>/<flow>/<run id>``).
    """

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.path = run_dir / JOURNAL
        self.offset = 0
        self._partial = b""
        self.state = LoadedState()
        self.attempts = AttemptLog()
        self.shape = GraphShape("", (), {})
        self.damaged: list[str] = []  # lines that could not be read (shown, never fatal)
        self.running = False
        self._lines = 0
        self._identity = (0, 0)
        self._seen: dict[str, int] = {}  # step -> order of its first record (instances' order)

    # --- reading --------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the whole journal (again): the starting point of a page."""
        self.offset, self._partial, self._lines, self._identity = 0, b"", 0, (0, 0)
        self.state, self.attempts, self.damaged = LoadedState(), AttemptLog(), []
        self._seen = {}
        for rec in self._read():
            self._apply(rec, None)
        self.shape = shape_of(self.dir, self.state)
        self.running = self._alive()

    def poll(self) -> Update:
        """Apply what was appended since the last look; cheap when nothing was (one ``stat``)."""
        up = Update()
        try:
            records = self._read()
        except JournalReset:
            self.load()
            up.reset = True
            return up
        for rec in records:
            self._apply(rec, up)
            if up.reset:
                self.shape = shape_of(self.dir, self.state)
        alive = self._alive() if self.state.end is None else False
        if alive != self.running:
            self.running = alive
            up.run = True
            up.steps.update(n for n, r in self.state.session.items() if r.get("ev") == "start")
        return up

    def _read(self) -> list[dict[str, Any]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.offset:
                raise JournalReset from None
            return []
        size, identity = st.st_size, (st.st_dev, st.st_ino)
        if (self.offset and identity != self._identity) or size < self.offset:
            raise JournalReset  # moved aside by --fresh and started again, or cut short
        self._identity = identity
        if size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        out: list[dict[str, Any]] = []
        for line in lines:
            self._lines += 1
            if not line:
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                rec = None
            if isinstance(rec, dict) and isinstance(rec.get("ev"), str):
                out.append(rec)
            else:
                self.damaged.append(f"{self.path}:{self._lines}: not a journal record, ignored")
        return out

    def _apply(self, rec: dict[str, Any], up: Update | None) -> None:
        ev, name = rec["ev"], rec.get("step")
        steps = rec.get("steps")
        if ev == "cached" and isinstance(steps, list):  # the steps a session restored together
            self.state.apply(rec)
            for n in steps:
                if isinstance(n, str):
                    self._seen.setdefault(n, len(self._seen))
                    if up is not None:
                        up.steps.add(n)
            return
        if ev != "run" and ev != "end" and not isinstance(name, str):
            return
        try:
            self.state.apply(rec)
        except (KeyError, TypeError):
            return
        self.attempts.apply(rec)
        if ev == "run":
            if up is not None:
                up.reset = True
            return
        if ev == "end":
            if up is not None:
                up.run = True
            return
        assert isinstance(name, str)
        self._seen.setdefault(name, len(self._seen))
        if up is not None:
            up.steps.add(name)

    def _alive(self) -> bool:
        """A process holds the run now (its header's pid lives on this host, and no end yet)."""
        if self.state.end is not None or not self.state.headers:
            return False
        return process_alive(self.dir)

    # --- what a page is sent --------------------------------------------------------------------

    def report(self) -> RunReport:
        """The whole run (every row), as :func:`flowkit.report.collect` derives it."""
        return collect(self.shape, self.state, running=self.running, attempts=self.attempts)

    def rows(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """The rows of the given steps or instances, as JSON, in the graph's order."""
        wanted = set(names)
        out: list[StepRow] = []
        for name in wanted:
            run, tries = self.running, self.attempts
            if name in self.shape.deps:
                out.append(step_rows(self.shape, self.state, name, running=run, attempts=tries)[0])
                continue
            base = split_instance(name)[0]
            if base in self.shape.deps:
                _, subs = step_rows(
                    self.shape, self.state, base, [name], running=run, attempts=tries
                )
                out.extend(subs)
        seen = self._seen
        out.sort(key=lambda r: (r.tier, r.parent or r.name, r.parent is not None, seen.get(r.name)))
        return [self.row_json(r) for r in out]

    def row_json(self, row: StepRow) -> dict[str, Any]:
        """A row as JSON, with its attempts (``bars``) for the timeline."""
        return row_json(row, self.bars(row))

    def bars(self, row: StepRow) -> list[dict[str, Any]]:
        """The step's attempts in the latest session; else its recorded run, as one bar."""
        tries = self.attempts.by_step.get(row.name)
        if tries:
            bars = [t.to_json() for t in tries]
            if not self.running and bars[-1]["status"] == "running":
                bars[-1]["status"] = "interrupted"
            return bars
        if row.start is None or row.status in ("cached", "pending"):
            return []
        return [
            {
                "n": row.attempts or 1,
                "start": row.start,
                "end": row.end,
                "status": row.status,
                "delay": 0.0,
                "error": f"{row.error_type}: {row.error_message}" if row.error_type else "",
            }
        ]

    def run_json(self, report: RunReport | None = None) -> dict[str, Any]:
        """The run's own facts (its rows aside)."""
        st = self.state
        header = st.headers[-1] if st.headers else {}
        if self.running:
            status = "running"
        elif st.end is not None:
            status = str(st.end.get("status", "unknown"))
        else:
            status = "interrupted" if st.headers else "no state"
        started = _num(header.get("time"))
        if status == "interrupted" and was_cancelled_in(self.dir, started):
            status = "cancelled"  # as `flowkit status` says after `flowkit cancel`
        return {
            "flow": self.shape.flow or str(header.get("flow", "")),
            "run_id": str(header.get("run_id", self.dir.name)),
            "status": status,
            "running": self.running,
            "params": header.get("params") or {},
            "started": started,
            "ended": None if st.end is None else _num(st.end.get("time")),
            "sessions": len(st.headers),
            "pid": header.get("pid"),
            "damaged": self.damaged[-5:],
            "steps": len(report.steps) if report is not None else None,
        }


def row_json(row: StepRow, bars: list[dict[str, Any]]) -> dict[str, Any]:
    """A :class:`StepRow` as a JSON object (every field), plus its ``bars``."""
    out = {f: getattr(row, f) for f in _ROW_FIELDS}
    out["retried"] = [list(t) for t in row.retried]
    out["bars"] = bars
    out["user_traceback"] = user_frames(row.traceback) if row.traceback else ""
    return out


def shape_of(run_dir: Path, state: LoadedState) -> GraphShape:
    """The run's saved graph shape; for runs saved without one, its steps as one tier."""
    try:
        return GraphShape.from_json(orjson.loads((run_dir / GRAPH).read_bytes()))
    except (OSError, ValueError):
        pass
    flow = str(state.headers[-1].get("flow", "")) if state.headers else ""
    names = [
        n
        for n in dict.fromkeys([*state.steps, *state.session])
        if split_instance(n)[0] == n or split_instance(n)[0] not in state.steps
    ]
    return GraphShape(flow, (tuple(names),), {n: ((), ()) for n in names})


def process_alive(run_dir: Path) -> bool:
    """Whether the process that holds the run (``owner.json``) still lives, on this host.

    Not a lock probe: probing the lock could make a run started at that instant fail to take it.
    """
    try:
        owner = orjson.loads((run_dir / "owner.json").read_bytes())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():
        return True  # another machine's process: trust the missing end record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class LogTail:
    """One step's log file, read from a remembered offset.

    Args:
        path: the log file (it may not exist yet: a step that printed nothing has none).
        last: on the first read, start this many bytes before the end (the tail, not all of it).
    """

    def __init__(self, path: Path, last: int = 64 * 1024) -> None:
        self.path, self.offset, self.last = path, -1, last

    def read(self, limit: int = 256 * 1024) -> str:
        """Text appended since the last read ('' when none), at most ``limit`` bytes at once."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return ""
        if self.offset < 0:
            self.offset = max(0, size - self.last)
        elif size < self.offset:  # truncated or replaced: start again
            self.offset = 0
        if size == self.offset:
            return ""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(min(limit, size - self.offset))
        cut = data.rfind(b"\n") + 1 if len(data) == limit else len(data)
        data = data[: cut or len(data)]
        self.offset += len(data)
        return data.decode("utf-8", errors="replace")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
