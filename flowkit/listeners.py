"""Consumers of the event stream that ship with flowkit: console lines and a logging bridge."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from . import pipes
from .capture import tail
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
from .keys import safe_name
from .result import RunStatus, Status, fmt_duration, shown

__all__ = ["ConsoleListener", "JsonLogListener", "LoggingListener"]


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


class ConsoleListener:
    """Prints one plain line per finished step and the run's summary (no control characters).

    ``verbosity``: 0 prints only failures and the summary, 1 every finished step, 2 starts and
    the traceback of each failure too (the step's own frames).
    A failed step's line is followed by the last ``tail_lines`` lines of its captured log: the
    file named by the event's ``log_path``, else ``<logs_dir>/<step>.log`` when ``logs_dir`` is
    given (``RunStore.logs``).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        verbosity: int = 1,
        *,
        logs_dir: str | os.PathLike[str] | None = None,
        tail_lines: int = 10,
    ) -> None:
        self.stream = stream or sys.stdout
        self.verbosity = verbosity
        self.logs_dir = Path(logs_dir) if logs_dir is not None else None
        self.tail_lines = tail_lines
        self._run_started: float | None = None

    def _print(self, line: str) -> None:
        pipes.write(self.stream, line + "\n")

    def on_event(self, event: Event) -> None:
        v = self.verbosity
        if isinstance(event, RunStarted):
            self._run_started = event.time
            if v >= 1:
                how = "resuming" if event.resumed else "starting"
                self._print(
                    f"Flow {shown(event.flow)}: {how} run {shown(event.run_id)} "
                    f"({event.total} steps)"
                )
        elif isinstance(event, StepStarted):
            if v >= 2:
                self._print(
                    f"[STARTED]   {shown(event.step)} (attempt {event.attempt}; {event.reason})"
                )
        elif isinstance(event, StepSucceeded):
            if v >= 1:
                why = f"; {event.reason}" if event.reason not in ("", "new") else ""
                self._print(
                    f"[SUCCEEDED] {shown(event.step)} ({_attempts(event.attempts)}, "
                    f"{fmt_duration(event.duration_s)}{why})"
                )
        elif isinstance(event, StepCached):
            if v >= 1:
                self._print(
                    f"[CACHED]    {shown(event.step)} ({_attempts(event.attempts)}, "
                    f"{fmt_duration(event.duration_s)}, finished earlier)"
                )
        elif isinstance(event, StepRetrying):
            # one line per retry: the whole error is in the step's log and `flowkit status`
            what = "timed out" if event.timed_out else f"failed: {event.error.headline()}"
            self._print(
                f"[RETRY]     {shown(event.step)} attempt {event.attempt} {what}; "
                f"retrying in {event.delay_s:.2f}s"
            )
        elif isinstance(event, StepFailed):
            label = "[TIMED OUT]" if event.timed_out else "[FAILED]   "
            self._print(
                f"{label} {shown(event.step)} ({_attempts(event.attempts)}, "
                f"{fmt_duration(event.duration_s)}): {event.error.headline()}"
            )
            if v >= 2 and event.error is not None and event.error.traceback:
                for line in event.error.traceback.rstrip("\n").split("\n"):
                    self._print(f"            ! {line}".rstrip())
            self._print_tail(event)
        elif isinstance(event, StepSkipped):
            if v >= 1:
                label = (
                    "[UPSTREAM_FAILED]" if event.status is Status.UPSTREAM_FAILED else "[SKIPPED]  "
                )
                self._print(f"{label} {shown(event.step)}: {event.reason}")
        elif isinstance(event, RunFinished):
            result = event.result
            self._print(result.summary())
            if result.status in (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.TIMED_OUT):
                self._print(
                    "Run the same command again to resume: finished steps are restored, "
                    "not re-run. Add --fresh to start over."
                )

    def _print_tail(self, event: StepFailed) -> None:
        path = log_path_of(event, self.logs_dir)
        if path is None or self.tail_lines <= 0:
            return
        lines = tail(path, self.tail_lines, since=self._run_started)
        if lines:
            self._print(f"            last lines of its log ({path}):")
            for line in lines:
                self._print(f"            | {line}".rstrip())


def log_path_of(event: StepFailed, logs_dir: Path | None) -> str | None:
    """Where the failed step's output was captured: the event says, or ``logs_dir`` does."""
    path = getattr(event, "log_path", None)
    if path is None and logs_dir is not None:
        path = str(logs_dir / f"{safe_name(event.step)}.log")
    return path


class LoggingListener:
    """Forwards events to the ``flowkit`` logger (INFO; failures at ERROR).

    Pass it to :meth:`Flow.run` (``flow.run(listeners=[LoggingListener()])``) and your handlers on
    the ``flowkit`` logger see the run; each record carries the event as ``record.flowkit_event``.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("flowkit")

    def on_event(self, event: Event) -> None:
        extra = {"flowkit_event": event}
        if isinstance(event, StepFailed):
            self.log.error(
                "step %s failed after %d attempt(s): %s",
                event.step,
                event.attempts,
                event.error,
                extra=extra,
            )
        elif isinstance(event, StepRetrying):
            self.log.warning(
                "step %s attempt %d failed (%s); retrying in %.2fs",
                event.step,
                event.attempt,
                event.error,
                event.delay_s,
                extra=extra,
            )
        elif isinstance(event, RunFinished):
            self.log.info("run %s finished: %s", event.run_id, event.status.value, extra=extra)
        elif isinstance(event, RunStarted):
            self.log.info("run %s of flow %s started", event.run_id, event.flow, extra=extra)
        else:
            self.log.debug("%s %s", type(event).__name__, getattr(event, "step", ""), extra=extra)


class JsonLogListener:
    """One JSON object per event and line.

    Every object has ``event``, ``run_id``, ``time``, ``step``, ``attempt``, ``duration`` and
    ``error`` (null where they do not apply): ``attempt`` is the attempt an event is about (the
    last one for a finished step), ``duration`` its seconds. Events' other fields follow
    (``attempts``, ``duration_s``, ``reason``, ...); ``StepSkipped`` adds ``status`` (``skipped`` or
    ``upstream_failed``), ``RunFinished`` adds ``status`` and ``counts``.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def on_event(self, event: Event) -> None:
        attempt = getattr(event, "attempt", None)
        attempts = getattr(event, "attempts", None)
        duration = getattr(event, "duration_s", None)
        err = getattr(event, "error", None)
        data: dict[str, Any] = {
            "event": type(event).__name__,
            "run_id": event.run_id,
            "time": event.time,
            "step": getattr(event, "step", None),
            "attempt": attempt if attempt is not None else attempts,
            "duration": duration,
            "error": None if err is None else str(err),
        }
        for attr in (
            "attempts",
            "duration_s",
            "reason",
            "delay_s",
            "flow",
            "total",
            "resumed",
            "timed_out",
            "log_path",
        ):
            value = getattr(event, attr, None)
            if value is not None:
                data[attr] = value
        if isinstance(event, StepSkipped):
            data["status"] = event.status.value  # skipped or upstream_failed
        if isinstance(event, RunFinished):
            data["status"] = event.status.value
            data["counts"] = event.result.counts()
        pipes.write(self.stream, orjson.dumps(data, default=str).decode() + "\n")
