"""Every attempt of a run's latest session, read from its journal: when each started and ended,
how it ended, and the backoff wait that followed it.

:class:`~flowkit.store.LoadedState` keeps what resume needs (a step's last record); reports and
the dashboard draw one bar per attempt, so they replay the ``start``, ``retry`` and ``done``
records through an :class:`AttemptLog` instead (a step's only attempt may have a ``done``
record and no ``start``: the ``done`` record then says when it ran). A ``retry`` record carries
the failed attempt's end (``time``); in journals written before it did, that end is taken as the
next attempt's start minus the wait.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .result import ErrorInfo

__all__ = ["Attempt", "AttemptLog"]


@dataclass(slots=True)
class Attempt:
    """One attempt of a step. ``status`` is ``running`` until the journal says how it ended."""

    n: int
    start: float | None
    end: float | None = None
    status: str = "running"
    delay: float = 0.0  # the wait before the next attempt (a failed attempt that was retried)
    error: str = ""
    worker: str | None = None  # where it ran, when the journal says

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "start": self.start,
            "end": self.end,
            "status": self.status,
            "delay": self.delay,
            "error": self.error,
            "worker": self.worker,
        }


class AttemptLog:
    """The attempts of the latest session, by step, built record by record (:meth:`apply`)."""

    def __init__(self) -> None:
        self.by_step: dict[str, list[Attempt]] = {}

    @classmethod
    def read(cls, journal: Path) -> AttemptLog:
        """Replay a journal file (lines that do not parse are skipped: this is for display)."""
        log = cls()
        try:
            data = journal.read_bytes()
        except FileNotFoundError:
            return log
        log.apply_all(_records(data.split(b"\n")))
        return log

    def apply_all(self, records: Iterable[dict[str, Any]]) -> None:
        for rec in records:
            self.apply(rec)

    def apply(self, rec: dict[str, Any]) -> None:
        """Take one journal record into account (records of other kinds are ignored)."""
        ev, name = rec.get("ev"), rec.get("step")
        if ev == "run":
            self.by_step.clear()
            return
        if not isinstance(name, str):
            return
        tries = self.by_step.get(name)
        if ev == "start":
            if tries is None:
                tries = self.by_step[name] = []
            start = _num(rec.get("time"))
            last = tries[-1] if tries else None
            older = last is not None and last.end is None and last.status != "running"
            if older and last is not None and start is not None:  # a retry record without time
                last.end = max(last.start or start, start - last.delay)
            n = rec.get("attempt")
            tries.append(Attempt(n if isinstance(n, int) and n > 0 else 1, start))
        elif ev == "retry" and tries:
            last = tries[-1]
            last.end = _num(rec.get("time"))
            last.status = "timed_out" if rec.get("timed_out") else "failed"
            last.delay = _num(rec.get("delay")) or 0.0
            last.error = _error(rec.get("error"))
            last.worker = _text(rec.get("worker"))
        elif ev == "done" and tries and tries[-1].status == "running":
            last = tries[-1]
            last.end = _num(rec.get("end"))
            last.status = str(rec.get("status", "succeeded"))
            last.error = _error(rec.get("error"))
            last.worker = _text(rec.get("worker"))
        elif ev == "done" and tries is None and rec.get("attempts") == 1 and "start" in rec:
            # a single attempt journaled without a `start` record (run inline, unwatched)
            self.by_step[name] = [
                Attempt(
                    1,
                    _num(rec.get("start")),
                    _num(rec.get("end")),
                    str(rec.get("status", "succeeded")),
                    error=_error(rec.get("error")),
                    worker=_text(rec.get("worker")),
                )
            ]


def _records(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    for line in lines:
        if not line:
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            yield rec


def _error(err: Any) -> str:
    return str(ErrorInfo.from_json(err)) if isinstance(err, dict) else ""


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
