"""Alerts when a run ends: a JSON webhook, a Slack incoming webhook, or an e-mail.

Notifiers are listeners of the event stream: ``flow.run(listeners=[Slack(url)])`` or
``flowkit run ... --notify slack:https://hooks.slack.com/...``. They act on ``RunFinished`` only,
when the run's status is one they were asked about (default: failed, timed out, interrupted).
Delivery problems are logged on the ``flowkit`` logger and never change the run's outcome.
"""

from __future__ import annotations

import logging
import os
import smtplib
import socket
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Any

import orjson

from .errors import UsageError
from .events import Event, RunFinished
from .result import RunResult, RunStatus

__all__ = ["Email", "Notifier", "Slack", "Webhook", "notifier_from_spec"]

log = logging.getLogger("flowkit")

#: When a notifier speaks unless told otherwise: every outcome that needs a human.
PROBLEMS = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED})


def run_summary(result: RunResult) -> dict[str, Any]:
    """What a notification says about a run, as JSON-ready data."""
    failed = [
        {"step": r.name, "status": r.status.value, "error": str(r.error) if r.error else ""}
        for r in result.steps.values()
        if r.status.failed
    ]
    return {
        "flow": result.flow,
        "run_id": result.run_id,
        "status": result.status.value,
        "params": result.params,
        "duration_s": round(result.duration_s, 3),
        "counts": result.counts(),
        "failed": failed,
        "state": result.state_path,
    }


def _headline(s: dict[str, Any]) -> str:
    verdict = {
        "succeeded": "PASSED",
        "failed": "FAILED",
        "timed_out": "TIMED OUT",
        "interrupted": "INTERRUPTED",
    }.get(s["status"], s["status"].upper())
    return f"flowkit: {s['flow']} {verdict} (run {s['run_id']})"


def _body(s: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(s["counts"].items()))
    lines = [_headline(s), f"{counts} in {s['duration_s']}s"]
    lines += [f"- {f['step']} {f['status']}: {f['error']}" for f in s["failed"]]
    if s["status"] != "succeeded":
        lines.append("Run the same command again to resume.")
    return "\n".join(lines)


class Notifier(ABC):
    """Base for notifiers: decides when to speak; subclasses say how (:meth:`send`)."""

    def __init__(self, on: Iterable[RunStatus | str] | None = None) -> None:
        """``on``: the run outcomes that alert (``"failed"``, ``RunStatus.SUCCEEDED``, ...,
        or ``"always"``); default failed, timed_out and interrupted.

        Raises:
            UsageError: ``on`` names something that is not a run outcome.
        """
        self.on = _outcomes(on, type(self).__name__) if on is not None else PROBLEMS

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunFinished) and event.status in self.on:
            try:
                self.send(run_summary(event.result))
            except Exception as exc:  # an alert that fails must not fail the run
                log.error("flowkit: %s could not deliver the alert: %s", self, exc)

    @abstractmethod
    def send(self, summary: dict[str, Any]) -> None:
        """Deliver one run's summary."""


#: Every way a run can end: what ``on="always"`` means.
ENDINGS = frozenset(s for s in RunStatus if s is not RunStatus.RUNNING)


def _outcomes(on: Iterable[RunStatus | str] | str, who: str) -> frozenset[RunStatus]:
    chosen: set[RunStatus] = set()
    for item in [on] if isinstance(on, str) else on:
        if item == "always":
            chosen |= ENDINGS
            continue
        try:
            status = RunStatus(item)
        except ValueError:
            status = RunStatus.RUNNING
        if status is RunStatus.RUNNING:
            valid = ", ".join(repr(s.value) for s in RunStatus if s in ENDINGS)
            raise UsageError(
                f"{who}(on=...): {item!r} is not a way a run ends; use {valid} or 'always'"
            )
        chosen.add(status)
    return frozenset(chosen)


def _post_json(url: str, payload: dict[str, Any], timeout: float) -> None:
    request = urllib.request.Request(
        url,
        data=orjson.dumps(payload),
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "flowkit"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status >= 300:
            raise OSError(f"{url} answered HTTP {response.status}")


class Webhook(Notifier):
    """POSTs the run summary as JSON to ``url``."""

    def __init__(
        self, url: str, on: Iterable[RunStatus | str] | None = None, timeout: float = 10.0
    ) -> None:
        super().__init__(on)
        self.url, self.timeout = url, timeout

    def __repr__(self) -> str:
        return f"Webhook({self.url!r})"

    def send(self, summary: dict[str, Any]) -> None:
        _post_json(self.url, summary, self.timeout)


class Slack(Webhook):
    """Posts a short text message to a Slack incoming webhook: ``Slack(webhook_url)``."""

    def __repr__(self) -> str:
        return "Slack(<webhook>)"

    def send(self, summary: dict[str, Any]) -> None:
        _post_json(self.url, {"text": _body(summary)}, self.timeout)


class Email(Notifier):
    """Sends the run summary by e-mail through an SMTP server.

    Defaults come from ``FLOWKIT_SMTP_HOST`` (localhost), ``FLOWKIT_SMTP_PORT`` (25),
    ``FLOWKIT_SMTP_FROM`` (flowkit@<host name>), ``FLOWKIT_SMTP_USER`` / ``FLOWKIT_SMTP_PASSWORD``
    (log in when set) and ``FLOWKIT_SMTP_STARTTLS=1``.
    """

    def __init__(
        self,
        to: str | Iterable[str],
        *,
        sender: str | None = None,
        host: str | None = None,
        port: int | None = None,
        on: Iterable[RunStatus | str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(on)
        env = os.environ
        self.to = [to] if isinstance(to, str) else list(to)
        self.host = host or env.get("FLOWKIT_SMTP_HOST", "localhost")
        self.port = port or int(env.get("FLOWKIT_SMTP_PORT", "25"))
        self.sender = sender or env.get("FLOWKIT_SMTP_FROM") or f"flowkit@{socket.gethostname()}"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Email(to={self.to!r}, via {self.host}:{self.port})"

    def send(self, summary: dict[str, Any]) -> None:
        msg = EmailMessage()
        msg["Subject"] = _headline(summary)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(_body(summary))
        env = os.environ
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if env.get("FLOWKIT_SMTP_STARTTLS") == "1":
                smtp.starttls()
            if env.get("FLOWKIT_SMTP_USER"):
                smtp.login(env["FLOWKIT_SMTP_USER"], env.get("FLOWKIT_SMTP_PASSWORD", ""))
            smtp.send_message(msg)


def notifier_from_spec(spec: str, on: Iterable[str] | None = None) -> Notifier:
    """``webhook:URL``, ``slack:URL`` or ``email:ADDRESS[,ADDRESS...]`` (the CLI's --notify).

    Raises:
        UsageError: an unknown kind, or a missing target.
    """
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise UsageError(f"--notify {spec!r}: use webhook:URL, slack:URL or email:ADDRESS")
    try:
        if kind == "webhook":
            return Webhook(target, on)
        if kind == "slack":
            return Slack(target, on)
        if kind == "email":
            return Email([a.strip() for a in target.split(",") if a.strip()], on=on)
    except UsageError as exc:  # a bad status in `on`
        detail = str(exc).split(": ", 1)[-1]
        raise UsageError(f"--notify-on: {detail}") from None
    raise UsageError(f"--notify {spec!r}: unknown kind {kind!r}; use webhook, slack or email")
