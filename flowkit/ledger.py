"""The journal's records, in one place: what each event of a run writes, and in which shape.

The engine says what happened (a step started, finished, failed, was retried, skipped, restored);
the ledger builds the record and appends it to the run's journal (the engine decides when to
commit). It keeps no copy: a run decides each step once, from what the journal held when it
started, so records written during the run are never read back by it (which keeps a finished
run's memory per step small). Fields that can be derived are left out to keep the journal small
(see ``store.duration_of``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import orjson

from .codec import Encoded
from .result import ErrorInfo, Status, StepResult, json_params
from .resume import Inputs
from .store import FORMAT, RunStore

__all__ = ["Ledger"]


class Ledger:
    """Writes a run's journal records. Only the scheduler loop calls it (one thread)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._cached: list[str] = []  # restored steps not journaled yet (one record for all)
        self._cached_rec: dict[str, Any] = {"ev": "cached"}

    def _put(self, rec: dict[str, Any]) -> None:
        if self._cached:
            self.flush_cached()
        self.store.append(rec)

    def flush_cached(self) -> None:
        """Journal the steps restored since the last record, as one ``cached`` record."""
        if self._cached:
            self._cached_rec["steps"] = self._cached
            self.store.append(self._cached_rec)
            self._cached = []
            self._cached_rec = {"ev": "cached"}

    def run_started(self, flow: str, run_id: str, params: dict[str, Any], time: float) -> None:
        self._put(
            {
                "ev": "run",
                "format": FORMAT,
                "flow": flow,
                "run_id": run_id,
                "params": json_params(params),
                "time": time,
                "pid": os.getpid(),
            }
        )

    def run_ended(self, status: str, time: float, counts: dict[str, int]) -> None:
        self._put({"ev": "end", "status": status, "time": time, "counts": counts})

    def started(self, name: str, attempt: int, time: float) -> None:
        rec: dict[str, Any] = {"ev": "start", "step": name, "time": round(time, 6)}
        if attempt > 1:
            rec["attempt"] = attempt
        self._put(rec)

    def succeeded(
        self,
        r: StepResult,
        inputs: Inputs,
        start: float,
        end: float,
        cpu: float,
        worker: str,
        peak_rss: int | None,
        out: Encoded,
        ctx: Encoded | None,
    ) -> None:
        rec: dict[str, Any] = {"ev": "done", "step": r.name, "status": "succeeded"}
        inputs.add_to(rec)
        rec["attempts"] = r.attempts
        rec["start"] = start
        rec["end"] = end
        rec["cpu"] = round(cpu, 6)
        rec["worker"] = worker
        if out.inline is not None:  # the JSON bytes made once by encode(), reused as they are
            rec["out"] = orjson.Fragment(out.inline)
            rec["hash"] = out.hash
        else:
            rec.update(out.fields())
        if r.attempts > 1:  # the span of all attempts; a single attempt's is end - start
            rec["dur"] = round(r.duration_s, 6)
        if r.reason != "new":  # the common case is left out
            rec["reason"] = r.reason
        if peak_rss is not None:
            rec["peak_rss"] = peak_rss
        if ctx is not None:
            rec["ctx"] = ctx.fields()
        self._put(rec)

    def failed(
        self, r: StepResult, inputs: Inputs | None, worker: str | None, err: ErrorInfo
    ) -> None:
        self._put(
            {
                "ev": "done",
                "step": r.name,
                "status": r.status.value,
                **(inputs.record() if inputs is not None else {}),
                "attempts": r.attempts,
                "dur": r.duration_s,
                "start": r.started,
                "end": r.ended,
                "reason": r.reason,
                "worker": worker,
                "error": err.to_json(),
            }
        )

    def retried(
        self,
        name: str,
        attempt: int,
        delay: float,
        err: ErrorInfo,
        timed_out: bool,
        time: float,
        worker: str | None = None,
    ) -> None:
        rec: dict[str, Any] = {
            "ev": "retry",
            "step": name,
            "time": round(time, 6),
            "attempt": attempt,
            "delay": round(delay, 6),
            "error": {"type": err.type, "message": err.message},
            "timed_out": timed_out,
        }
        if worker is not None:  # where the failed attempt ran
            rec["worker"] = worker
        self._put(rec)

    def skipped(self, name: str, reason: str, status: Status = Status.SKIPPED) -> None:
        """A step not run in this session (trigger rule, fail-fast): not a decision to remember.

        ``upstream_failed`` is written as ``"status"``; a record without it (all records of older
        journals) is a plain skip.
        """
        rec = {"ev": "skip", "step": name, "reason": reason}
        if status is not Status.SKIPPED:
            rec["status"] = status.value
        self._put(rec)

    def condition_false(self, name: str, reason: str, inputs: Inputs) -> None:
        """A ``when=`` decision, remembered with the step's key so a resume decides the same."""
        self._put(
            {"ev": "done", "step": name, "status": "skipped", "reason": reason, **inputs.record()}
        )

    def cached(self, name: str) -> None:
        """A step restored in this session. Restored steps share one record, written with the
        next record or commit, so a resume that finds everything cached adds a line, not one
        per step."""
        self._cached.append(name)

    def gathered(self, name: str, content_hash: str, instances: Sequence[str], reason: str) -> None:
        """A fan-out step gathered its instances (``of``: their names, which ``clean
        --orphans`` keeps; the outputs of instances no longer made are reclaimed)."""
        self._put(
            {
                "ev": "done",
                "step": name,
                "status": "succeeded",
                "hash": content_hash,
                "attempts": 1,
                "instances": len(instances),
                "of": list(instances),
                "reason": reason,
            }
        )

    def adopted(self, record: dict[str, Any]) -> None:
        """A step restored from the shared cache: its source's ``done`` record (with ``from``)
        becomes this run's own, so a resume, ``status`` and ``clean --orphans`` see it."""
        self._put({"ev": "done", **record})
