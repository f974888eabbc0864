"""The runs in a state folder: finding them, summarising them, and keeping paths inside it.

A finished run is summarised from its ``snapshot.json`` (when it covers the whole journal);
any other run (running, interrupted) from its journal. Summaries are cached by the size and
modification time of those files, so listing a folder of a thousand runs again reads only the
runs that changed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..store import JOURNAL, SNAPSHOT
from .actions import was_cancelled_in
from .tail import RunTail

__all__ = ["Catalog", "RunSummary", "UnknownRunError"]

# what safe_name() produces: no separators, no leading dot (so never "." or "..")
_SAFE_PART = re.compile(r"[A-Za-z0-9_=\[\]\-][A-Za-z0-9_.=\[\]\-]{0,200}")


class UnknownRunError(LookupError):
    """A URL names a run that is not in the state folder (or not a folder name at all)."""


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One line of the runs list."""

    flow: str
    flow_dir: str  # folder names: what URLs use
    run_dir: str
    run_id: str
    status: str
    started: float | None
    duration: float | None
    counts: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    steps: int = 0

    def matches(self, text: str) -> bool:
        """Whether ``text`` (lower case) is in its flow, run id, status or parameters."""
        hay = f"{self.flow} {self.run_id} {self.status} " + " ".join(
            f"{k}={v}" for k, v in self.params.items()
        )
        return text in hay.lower()


class Catalog:
    """The runs under a state folder.

    Args:
        root: the state folder (``.flowkit``).
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, tuple[tuple[int, ...], RunSummary]] = {}
        self._tails: dict[Path, RunTail] = {}  # runs without an up-to-date snapshot, followed

    def run_dir(self, flow_dir: str, run_dir: str) -> Path:
        """The folder of a run named in a URL, confined to the state folder.

        Raises:
            UnknownRunError: a name is not a plain folder name, or the run does not exist.
        """
        if not (_SAFE_PART.fullmatch(flow_dir) and _SAFE_PART.fullmatch(run_dir)):
            raise UnknownRunError(f"{flow_dir}/{run_dir}: not a run folder name")
        path = (self.root / flow_dir / run_dir).resolve()
        if path.parent.parent != self.root or not (path / JOURNAL).is_file():
            raise UnknownRunError(f"no run {flow_dir}/{run_dir} in {self.root}")
        return path

    def runs(self) -> list[RunSummary]:
        """Every run in the folder, newest first (moved-aside ``.previous`` runs left out)."""
        out: list[RunSummary] = []
        seen: set[Path] = set()
        try:
            flows = sorted(os.scandir(self.root), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        for fe in flows:
            if not fe.is_dir() or fe.name.startswith("."):
                continue
            for re_ in os.scandir(fe.path):
                if not re_.is_dir() or re_.name.endswith(".previous"):
                    continue
                path = Path(re_.path)
                summary = self._summary(path)
                if summary is not None:
                    seen.add(path)
                    out.append(summary)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
            self._tails.pop(gone, None)
        out.sort(key=lambda s: (s.started or 0.0, s.run_dir), reverse=True)
        return out

    def signature(self) -> int:
        """A number that changes when any run's journal does (for telling pages to refresh)."""
        sig = 0
        for path in list(self._cache):
            try:
                st = os.stat(path / JOURNAL)
            except FileNotFoundError:
                sig ^= hash(path)
                continue
            sig ^= hash((path, st.st_size, st.st_mtime_ns))
        try:
            sig ^= hash(tuple(sorted(os.listdir(self.root))))
            for name in os.listdir(self.root):
                p = self.root / name
                if p.is_dir():
                    sig ^= hash((name, os.stat(p).st_mtime_ns))
        except FileNotFoundError:
            pass
        return sig

    def _summary(self, path: Path) -> RunSummary | None:
        try:
            js = os.stat(path / JOURNAL)
        except FileNotFoundError:
            return None
        try:
            ss = os.stat(path / SNAPSHOT)
            snap_key: tuple[int, ...] = (ss.st_size, ss.st_mtime_ns)
        except FileNotFoundError:
            snap_key = ()
        key = (js.st_size, js.st_mtime_ns, *snap_key)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == key and cached[1].status != "running":
            return cached[1]
        summary = self._from_snapshot(path, js.st_size) if snap_key else None
        if summary is None:
            summary = self._from_journal(path)
        else:
            self._tails.pop(path, None)
        self._cache[path] = (key, summary)
        return summary

    def _from_snapshot(self, path: Path, journal_size: int) -> RunSummary | None:
        try:
            snap = orjson.loads((path / SNAPSHOT).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(snap, dict) or snap.get("journal_size") != journal_size:
            return None  # the journal grew since: a later session, read it instead
        counts = snap.get("counts")
        steps = snap.get("steps")
        started, dur = snap.get("started"), snap.get("duration_s")
        status = str(snap.get("status", "unknown"))
        if status == "interrupted" and was_cancelled_in(path, started):
            status = "cancelled"
        return RunSummary(
            flow=str(snap.get("flow", path.parent.name)),
            flow_dir=path.parent.name,
            run_dir=path.name,
            run_id=str(snap.get("run_id", path.name)),
            status=status,
            started=float(started) if isinstance(started, (int, float)) else None,
            duration=float(dur) if isinstance(dur, (int, float)) else None,
            counts={str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {},
            params=dict(snap.get("params") or {}),
            steps=len(steps) if isinstance(steps, dict) else 0,
        )

    def _from_journal(self, path: Path) -> RunSummary:
        tail = self._tails.get(path)
        if tail is None:
            tail = self._tails[path] = RunTail(path)
            tail.load()
        else:
            tail.poll()  # a running run: read only what it appended since the last listing
        report = tail.report()
        run = tail.run_json(report)
        return RunSummary(
            flow=run["flow"] or path.parent.name,
            flow_dir=path.parent.name,
            run_dir=path.name,
            run_id=run["run_id"],
            status=run["status"],
            started=run["started"],
            duration=report.duration,
            counts=report.counts(),
            params=dict(run["params"]),
            steps=len(report.steps),
        )
