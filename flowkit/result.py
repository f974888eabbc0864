"""What a run produced: per-step results and the run's outcome."""

from __future__ import annotations

import os
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any

__all__ = ["ErrorInfo", "RunResult", "RunStatus", "Status", "StepResult", "json_params"]


class Status(str, Enum):
    """The state of one step in one run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"
    #: not run because an upstream failed (or was itself ``upstream_failed``), as in Airflow
    UPSTREAM_FAILED = "upstream_failed"

    @property
    def ok(self) -> bool:
        """Succeeded now or earlier (cached): its output is available."""
        return self in (Status.SUCCEEDED, Status.CACHED)

    @property
    def failed(self) -> bool:
        """The step itself ran and failed (or timed out); ``upstream_failed`` is not included."""
        return self in (Status.FAILED, Status.TIMED_OUT)

    @property
    def finished(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)


_CACHED = Status.CACHED


class RunStatus(str, Enum):
    """The outcome of a whole run."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"


_OWN = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: Frames of the machinery between flowkit and a step: pools, threads, event loops.
_MACHINERY = tuple(
    os.sep + os.path.join(*parts)
    for parts in (
        ("concurrent", "futures", ""),
        ("asyncio", ""),
        ("multiprocessing", ""),
        ("threading.py",),
    )
)


def _is_user_frame(filename: str) -> bool:
    return not filename.startswith(_OWN) and not any(m in filename for m in _MACHINERY)


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback as Python prints it, without flowkit's own frames (nor those of the
    pools and event loops that ran the step): what the step's code did. Chained exceptions
    (``raise ... from``, errors while handling another) are kept, trimmed the same way."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    seen: set[int] = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if _is_user_frame(f.filename)]
        )
        todo.extend(x for x in (t.__cause__, t.__context__) if x is not None)
    text = "".join(te.format())
    # an exception raised by flowkit itself has no user frame: its one line says it all
    return text.replace("Traceback (most recent call last):\n", "", 1) if not te.stack else text


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception, reduced to what can be stored and shown: type, message, traceback."""

    type: str
    message: str
    traceback: str = ""
    exit_code: int | None = None  # a command's exit status, when a command failed

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        """The error of ``exc``; its traceback shows the step's own frames (see
        :func:`user_traceback`), as taken where it was raised if it crossed a process."""
        tb = getattr(exc, "flowkit_traceback", None)
        if not isinstance(tb, str):
            tb = user_traceback(exc)
        message = str(exc)
        fields = getattr(exc, "__dict__", {})
        why = fields.get("pickle_error")
        if why:  # a stand-in for an exception that did not pickle (see flowkit.remote)
            if not isinstance(fields.get("flowkit_traceback"), str):
                tb = str(fields.get("original_traceback", tb))
            tb = f"{tb.rstrip()}\n({why}; a stand-in came back)\n"
            message = f"{message} ({why})"
        code = getattr(exc, "exit_code", None)
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        return cls(type(exc).__qualname__, message, tb, exit_code)

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    def headline(self, width: int = 200) -> str:
        """``type: message`` on one line: the message's first non-blank line, cut to ``width``
        characters, with `` [...]`` when something was left out (the rest is in the step's log)."""
        lines = [x for x in self.message.splitlines() if x.strip()]
        first = lines[0].strip() if lines else ""
        text = f"{self.type}: {first}" if first else self.type
        if len(text) > width:
            return text[: width - 6].rstrip() + " [...]"
        return text + " [...]" if len(lines) > 1 else text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "message": self.message,
            "traceback": self.traceback,
        }
        if self.exit_code is not None:
            out["exit_code"] = self.exit_code
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErrorInfo:
        code = data.get("exit_code")
        return cls(
            str(data.get("type", "")),
            str(data.get("message", "")),
            str(data.get("traceback", "")),
            code if isinstance(code, int) and not isinstance(code, bool) else None,
        )


@dataclass(slots=True)
class StepResult:
    """One step's outcome in a run.

    ``reason`` says why it ran (``new``, ``code changed``, ``input changed: fetch``, ...), why it
    was cached, or why it was skipped. ``attempt_errors`` holds the error of every failed attempt,
    ``retry_delays`` the seconds waited after each failed attempt that was retried.
    """

    name: str
    status: Status = Status.PENDING
    attempts: int = 0
    duration_s: float = 0.0
    started: float | None = None
    ended: float | None = None
    output: Any = None
    error: ErrorInfo | None = None
    reason: str = ""
    attempt_errors: list[ErrorInfo] = field(default_factory=list)
    retry_delays: list[float] = field(default_factory=list)
    #: the cost of its successful attempt, when the run was given cost rates
    cost: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (without the output); empty fields are left out."""
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status._value_,  # (.value, without the enum property's lookup)
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 6),
        }
        if self.status is Status.CACHED:  # its timing and reason are in the run that made it
            return out
        if self.started is not None:
            out["started"] = self.started
            if self.attempts > 1:  # else ended = started + duration_s
                out["ended"] = self.ended
        if self.reason:
            out["reason"] = self.reason
        if self.error is not None:
            out["error"] = self.error.to_json()
        if self.attempt_errors:
            out["attempt_errors"] = [e.to_json() for e in self.attempt_errors]
            out["retry_delays"] = self.retry_delays
        if self.cost is not None:
            out["cost"] = round(self.cost, 9)
        return out


def json_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Run parameters as the journal and reports store them: a path as its text (dates, enums,
    lists and dicts are JSON already)."""
    return {k: str(v) if isinstance(v, PurePath) else v for k, v in params.items()}


@dataclass(slots=True)
class RunResult:
    """The result of ``Flow.run``: per-step results (in topological order) and the run status."""

    flow: str
    run_id: str
    params: dict[str, Any]
    steps: dict[str, StepResult]
    status: RunStatus = RunStatus.RUNNING
    started: float = 0.0
    duration_s: float = 0.0
    state_path: str | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    #: the Dask cluster the run used: ``address``, ``dashboard``, ``workers`` (None: none)
    cluster: dict[str, Any] | None = None
    #: the run's OpenTelemetry trace id, when it was traced
    trace_id: str | None = None
    #: the cost rates the run was given (``cpu_hour``, ``gb_hour``), or None: no cost
    cost_rates: dict[str, float] | None = None

    @property
    def cost(self) -> float | None:
        """The total cost of the steps run (see :mod:`flowkit.cost`), or None without rates."""
        if self.cost_rates is None:
            return None
        return sum(r.cost or 0.0 for r in self.steps.values())

    @property
    def ok(self) -> bool:
        """True when every step succeeded or was cached (skips by condition or rule included)."""
        return self.status is RunStatus.SUCCEEDED

    @property
    def exit_code(self) -> int:
        """The CLI's exit status for this result: 0 ok, 1 a step failed, 130 interrupted."""
        if self.status is RunStatus.INTERRUPTED:
            return 130
        return 0 if self.ok else 1

    @property
    def outputs(self) -> dict[str, Any]:
        """The output of every step that succeeded or was cached."""
        return {n: r.output for n, r in self.steps.items() if r.status.ok}

    def __getitem__(self, name: str) -> StepResult:
        return self.steps[name]

    def __iter__(self) -> Iterator[StepResult]:
        return iter(self.steps.values())

    def counts(self) -> dict[str, int]:
        """How many steps ended in each status (statuses with zero steps omitted)."""
        return dict(Counter([r.status._value_ for r in self.steps.values()]))

    def summary(self) -> str:
        """A short human summary: verdict, counts, time, and each failure."""
        verdict = {
            RunStatus.SUCCEEDED: "PASSED",
            RunStatus.FAILED: "FAILED",
            RunStatus.INTERRUPTED: "INTERRUPTED",
            RunStatus.TIMED_OUT: "TIMED OUT",
            RunStatus.RUNNING: "RUNNING",
        }[self.status]
        order = [
            "succeeded",
            "cached",
            "failed",
            "timed_out",
            "upstream_failed",
            "skipped",
            "pending",
        ]
        counts = self.counts()
        parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
        lines = [
            f"Flow {shown(self.flow)} {verdict} — run {shown(self.run_id)}: "
            f"{', '.join(parts) or 'no steps'} "
            f"in {_fmt_duration(self.duration_s)}"
        ]
        for r in self.steps.values():
            if r.status.failed and r.error:
                lines.append(f"  {shown(r.name)}: {r.error.headline()}")
        if self.cost_rates is not None:
            rates = ", ".join(f"{k}={v:g}" for k, v in self.cost_rates.items())
            lines.append(f"  cost: {_fmt_cost(self.cost or 0.0)} ({rates})")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "run_id": self.run_id,
            "params": json_params(self.params),
            "status": self.status.value,
            "started": self.started,
            "duration_s": round(self.duration_s, 6),
            "counts": self.counts(),
            "steps": [
                # a cached step's entry (as StepResult.to_json makes it), without the call
                {
                    "name": r.name,
                    "status": "cached",
                    "attempts": r.attempts,
                    "duration_s": round(r.duration_s, 6),
                }
                if r.status is _CACHED
                else r.to_json()
                for r in self.steps.values()
            ],
            **({"notifications": self.notifications} if self.notifications else {}),
            **({"cluster": self.cluster} if self.cluster else {}),
            **({"trace_id": self.trace_id} if self.trace_id else {}),
            **(
                {"cost": {"total": round(self.cost or 0.0, 9), "rates": self.cost_rates}}
                if self.cost_rates is not None
                else {}
            ),
        }


def _fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


fmt_duration = _fmt_duration


def _fmt_cost(value: float) -> str:
    return f"{value:,.2f}" if value >= 1 else f"{value:.4g}"


def shown(name: str) -> str:
    """``name`` for the console: control characters (a newline, an escape sequence) written as
    escapes, so a step, flow or run name can neither break a line nor drive the terminal."""
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
