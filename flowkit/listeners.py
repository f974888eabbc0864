"""Consumers of the event stream that ship with flowkit: console lines and a logging bridge."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson

from .events import (
    Event,
    RunFinished,
    RunStarted,
    StepCached,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from .result import RunStatus, fmt_duration

__all__ = ["ConsoleListener", "JsonLogListener", "LoggingListener"]


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


class ConsoleListener:
    """Prints one plain line per finished step and the run's summary (no control characters).

    ``verbosity``: 0 prints only failures and the summary, 1 every finished step, 2 starts too.
    """

    def __init__(self, stream: TextIO | None = None, verbosity: int = 1) -> None:
        self.stream = stream or sys.stdout
        self.verbosity = verbosity

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def on_event(self, event: Event) -> None:
        v = self.verbosity
        if isinstance(event, RunStarted):
            if v >= 1:
                how = "resuming" if event.resumed else "starting"
                self._print(f"Flow {event.flow}: {how} run {event.run_id} ({event.total} steps)")
        elif isinstance(event, StepStarted):
            if v >= 2:
                self._print(f"[STARTED]   {event.step} (attempt {event.attempt}; {event.reason})")
        elif isinstance(event, StepSucceeded):
            if v >= 1:
                self._print(
                    f"[SUCCEEDED] {event.step} ({_attempts(event.attempts)}, "
                    f"{fmt_duration(event.duration_s)})"
                )
        elif isinstance(event, StepCached):
            if v >= 1:
                self._print(
                    f"[CACHED]    {event.step} (finished earlier, {fmt_duration(event.duration_s)})"
                )
        elif isinstance(event, StepRetrying):
            what = "timed out" if event.timed_out else f"failed: {event.error}"
            self._print(
                f"[RETRY]     {event.step} attempt {event.attempt} {what}; "
                f"retrying in {event.delay_s:.2f}s"
            )
        elif isinstance(event, StepFailed):
            label = "[TIMED OUT]" if event.timed_out else "[FAILED]   "
            self._print(
                f"{label} {event.step} ({_attempts(event.attempts)}, "
                f"{fmt_duration(event.duration_s)}): {event.error}"
            )
        elif isinstance(event, StepSkipped):
            if v >= 1:
                self._print(f"[SKIPPED]   {event.step}: {event.reason}")
        elif isinstance(event, RunFinished):
            result = event.result
            self._print(result.summary())
            if result.status in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.TIMED_OUT):
                self._print(
                    "Run the same command again to resume: finished steps are restored, "
                    "not re-run. Add --fresh to start over."
                )


class LoggingListener:
    """Forwards events to the ``flowkit`` logger (INFO; failures at ERROR)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("flowkit")

    def on_event(self, event: Event) -> None:
        if isinstance(event, StepFailed):
            self.log.error(
                "step %s failed after %d attempt(s): %s", event.step, event.attempts, event.error
            )
        elif isinstance(event, StepRetrying):
            self.log.warning(
                "step %s attempt %d failed (%s); retrying in %.2fs",
                event.step,
                event.attempt,
                event.error,
                event.delay_s,
            )
        elif isinstance(event, RunFinished):
            self.log.info("run %s finished: %s", event.run_id, event.status.value)
        elif isinstance(event, RunStarted):
            self.log.info("run %s of flow %s started", event.run_id, event.flow)
        else:
            self.log.debug("%s %s", type(event).__name__, getattr(event, "step", ""))


class JsonLogListener:
    """One JSON object per event and line (event, run_id, step, attempt, duration, error)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def on_event(self, event: Event) -> None:
        data: dict[str, Any] = {
            "event": type(event).__name__,
            "run_id": event.run_id,
            "time": event.time,
        }
        for attr in ("step", "attempt", "attempts", "duration_s", "reason", "delay_s", "flow"):
            if hasattr(event, attr):
                data[attr] = getattr(event, attr)
        err = getattr(event, "error", None)
        if err is not None:
            data["error"] = str(err)
        if isinstance(event, RunFinished):
            data["status"] = event.status.value
            data["counts"] = event.result.counts()
        self.stream.write(orjson.dumps(data, default=str).decode() + "\n")
        self.stream.flush()
