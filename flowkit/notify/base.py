"""What every notifier shares: when it speaks, what it says about a run, and redaction.

A notifier turns a run summary (:func:`run_summary`, JSON-ready) into one delivery. The base class
decides *when* (the run statuses in ``on``), bounds the delivery (a deadline and retries) and
returns a :class:`Delivery` record; subclasses say *how* (:meth:`Notifier.deliver`) and which of
their settings are secrets (:meth:`Notifier.secrets`), which never appear in a message, a log line,
a report or a ``repr``.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..events import Event, RunFinished
from ..result import RunResult, RunStatus
from .transport import Deadline, DeliveryError, retrying

__all__ = [
    "PROBLEMS",
    "REDACTED",
    "Delivery",
    "Notifier",
    "parse_on",
    "redact",
    "resume_command",
    "run_summary",
    "url_target",
]

log = logging.getLogger("flowkit")

#: When a notifier speaks unless told otherwise: every outcome that needs a human.
PROBLEMS = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED})
#: What a secret is replaced by.
REDACTED = "<redacted>"
#: The payload version of the webhook's JSON (bumped only for incompatible changes).
PAYLOAD_VERSION = 1


def final_statuses() -> list[str]:
    """Every status a finished run can have."""
    return [s.value for s in RunStatus if s is not RunStatus.RUNNING]


def parse_on(on: Iterable[RunStatus | str] | None) -> frozenset[RunStatus]:
    """The statuses a notifier speaks for; ``always`` means all of them.

    Raises:
        ValueError: an unknown status (the message lists the valid ones).
    """
    if on is None:
        return PROBLEMS
    if isinstance(on, str):
        on = [on]
    out: set[RunStatus] = set()
    for x in on:
        if x == "always":
            out.update(RunStatus(s) for s in final_statuses())
            continue
        try:
            status = RunStatus(x)
        except ValueError:
            status = RunStatus.RUNNING
        if status is RunStatus.RUNNING:
            valid = ", ".join([*final_statuses(), "always"])
            raise ValueError(f"{x!r} is not a run outcome; use {valid}") from None
        out.add(status)
    return frozenset(out)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by :data:`REDACTED` (longest first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that are secret: all of it, its path and query, its password."""
    parts = urlsplit(url)
    out = [url]
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    if len(tail) > 1:
        out.append(tail)
    if parts.password:
        out.append(parts.password)
    return out


def url_target(url: str) -> str:
    """What may be shown of a URL: its scheme, host and port (the path is often the key)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def resume_command(argv: Sequence[str] | None = None) -> str | None:
    """The command that resumes this run: this process's own command line, without ``--fresh``.

    None when there is no command line to repeat (an interactive session).
    """
    args = list(sys.argv if argv is None else argv)
    if not args or args[0] in ("", "-c", "-"):
        return None
    prog, rest = args[0], _without_secrets([a for a in args[1:] if a != "--fresh"])
    if prog.endswith(os.path.join("flowkit", "__main__.py")):
        words = ["python", "-m", "flowkit", *rest]
    elif os.path.basename(prog) == "flowkit":
        words = ["flowkit", *rest]
    else:
        words = ["python", prog, *rest]
    return shlex.join(words)


def _without_secrets(args: list[str]) -> list[str]:
    """``--notify KIND:TARGET`` targets are webhook URLs and keys: only the kind is kept."""
    out: list[str] = []
    hide = False
    for a in args:
        if hide:
            out.append(f"{a.partition(':')[0]}:{REDACTED}")
            hide = False
        elif a == "--notify":
            out.append(a)
            hide = True
        elif a.startswith("--notify="):
            out.append(f"--notify={a[9:].partition(':')[0]}:{REDACTED}")
        else:
            out.append(a)
    return out


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_summary(result: RunResult, *, resume: str | None = None) -> dict[str, Any]:
    """What a notification says about a run, as JSON-ready data (the webhook's payload)."""
    failed = []
    for r in result.steps.values():
        if r.status.failed:
            error = str(r.error) if r.error else ""
            failed.append(
                {
                    "step": r.name,
                    "status": r.status.value,
                    "error": error,
                    "last_line": _last_line(error),
                }
            )
    return {
        "version": PAYLOAD_VERSION,
        "event": "run.finished",
        "flow": result.flow,
        "run_id": result.run_id,
        "status": result.status.value,
        "params": result.params,
        "host": socket.gethostname(),
        "started": result.started,
        "duration_s": round(result.duration_s, 3),
        "counts": result.counts(),
        "failed": failed,
        "state": result.state_path,
        "resume_command": resume if result.status is not RunStatus.SUCCEEDED else None,
    }


VERDICTS = {
    "succeeded": "PASSED",
    "failed": "FAILED",
    "timed_out": "TIMED OUT",
    "interrupted": "INTERRUPTED",
}


def headline(s: dict[str, Any]) -> str:
    """``flowkit: daily FAILED (run daily-3f2a)``."""
    verdict = VERDICTS.get(s["status"], str(s["status"]).upper())
    return f"flowkit: {s['flow']} {verdict} (run {s['run_id']})"


def counts_text(s: dict[str, Any]) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(s["counts"].items())) or "no steps"


def resume_text(s: dict[str, Any]) -> str:
    cmd = s.get("resume_command")
    if cmd:
        return f"Resume: {cmd}"
    return "Run the same command again to resume."


def text_body(s: dict[str, Any], message: str | None = None) -> str:
    """The plain-text rendering of a summary (Slack's fallback, the e-mail's text part)."""
    lines = [message] if message else []
    lines += [
        headline(s),
        f"host {s['host']}: {counts_text(s)} in {s['duration_s']}s",
    ]
    lines += [f"- {f['step']} {f['status']}: {f['last_line'] or f['error']}" for f in s["failed"]]
    if s["status"] != "succeeded":
        lines.append(resume_text(s))
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one notifier for one run (in ``RunResult.notifications`` and the report).

    ``event`` is what was sent (``message``, or PagerDuty's ``trigger`` / ``resolve``); ``error``
    is empty when it was delivered, and never holds a secret.
    """

    notifier: str
    target: str
    event: str
    ok: bool
    attempts: int
    duration_s: float
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "notifier": self.notifier,
            "target": self.target,
            "event": self.event,
            "ok": self.ok,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 3),
        }
        if self.error:
            out["error"] = self.error
        return out

    def describe(self) -> str:
        """One line for the console."""
        what = f"{self.notifier} alert ({self.event}) to {self.target}"
        if self.ok:
            return f"{what}: delivered"
        return f"{what}: NOT delivered after {self.attempts} attempt(s): {self.error}"


class Notifier(ABC):
    """Base for notifiers: decides when to speak and bounds the delivery.

    Args:
        on: run statuses that trigger it (``failed``, ``timed_out``, ``interrupted``,
            ``succeeded``, or ``always``); default: the first three.
        timeout: the wall-clock deadline of one delivery, retries included (seconds).
        retries: further attempts after a connection error or a server error (5xx, 429).

    Raises:
        ValueError: an unknown status in ``on``, or a timeout that is not a positive number.
    """

    kind: ClassVar[str] = "notifier"

    def __init__(
        self,
        on: Iterable[RunStatus | str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        self.on = parse_on(on)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        self.timeout = float(timeout)
        self.retries = retries

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target()})"

    @abstractmethod
    def target(self) -> str:
        """Where it delivers, as may be shown (no secrets)."""

    @abstractmethod
    def secrets(self) -> list[str]:
        """Every string of its settings that must never be shown."""

    def wants(self, status: RunStatus) -> bool:
        """Whether a run that ended with ``status`` is notified."""
        return status in self.on

    def event_for(self, status: RunStatus) -> str:
        """What it sends for a run that ended with ``status``."""
        return "message"

    @abstractmethod
    def deliver(self, summary: dict[str, Any], deadline: Deadline) -> None:
        """Make one delivery attempt of ``summary`` within ``deadline``.

        Raises:
            DeliveryError, OSError, http.client.HTTPException, smtplib.SMTPException.
        """

    def notify(self, summary: dict[str, Any]) -> Delivery:
        """Deliver ``summary`` with retries within the deadline; never raises."""
        status = RunStatus(summary["status"])
        attempts = 0

        def count(n: int) -> None:
            nonlocal attempts
            attempts = n

        t0 = time.monotonic()
        error = ""
        try:
            with Deadline(self.timeout) as deadline:
                retrying(
                    lambda: self.deliver(summary, deadline),
                    deadline,
                    self.retries,
                    on_attempt=count,
                )
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or an odd failure: reported, never raised into the run
            error = f"{type(exc).__name__}: {exc}"
        return Delivery(
            self.kind,
            self.target(),
            self.event_for(status),
            not error,
            attempts,
            time.monotonic() - t0,
            redact(error, self.secrets()),
        )

    def send(self, summary: dict[str, Any]) -> None:
        """Deliver ``summary`` now (bounded, with retries).

        Raises:
            DeliveryError: it could not be delivered (the message holds no secret).
        """
        d = self.notify(summary)
        if not d.ok:
            raise DeliveryError(d.error, retry=False)

    def on_event(self, event: Event) -> None:
        """As a plain listener: deliver when the run finishes with a status it wants.

        ``Flow.run`` does not call this: it sends all of a run's notifiers concurrently and
        records the outcome in the run's report. This is for other event sources.
        """
        if isinstance(event, RunFinished) and self.wants(event.status):
            d = self.notify(run_summary(event.result, resume=resume_command()))
            if not d.ok:
                log.warning("flowkit: %s", d.describe())
