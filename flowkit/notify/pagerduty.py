"""PagerDuty Events API v2: an incident per failed run, resolved when the run later succeeds."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

import orjson

from ..result import RunStatus
from .base import Notifier, headline, url_target
from .transport import Deadline, post
from .webhook import check_url

__all__ = ["DEFAULT_URL", "SEVERITIES", "PagerDuty", "dedup_key"]

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")


def dedup_key(flow: str, run_id: str) -> str:
    """The incident key of a run: ``flowkit/<flow>/<run_id>``.

    The run id is derived from the flow and its parameters, so the session that resumes a failed
    run (the same command, run again) has the same key and resolves the incident the failed
    session opened. Keys longer than PagerDuty's 255 characters are shortened with a hash.
    """
    key = f"flowkit/{flow}/{run_id}"
    if len(key) > 255:
        key = key[:190] + "#" + hashlib.sha256(key.encode()).hexdigest()
    return key


class PagerDuty(Notifier):
    """Opens a PagerDuty incident when a run fails and resolves it when the run succeeds.

    A run whose status is in ``on`` (default: failed, timed out, interrupted) sends a
    ``trigger``; a run that succeeds sends a ``resolve`` with the same dedup key
    (:func:`dedup_key`), whatever ``on`` says. PagerDuty ignores a resolve for a key with no open
    incident.

    Args:
        integration_key: the Events API v2 integration (routing) key.
        severity: ``critical``, ``error`` (default), ``warning`` or ``info``.
        url: the Events API endpoint (default ``$FLOWKIT_PAGERDUTY_URL``, else PagerDuty's).
        message: the incident's summary (default: the run's headline).
        Others: see :class:`Notifier`.

    Raises:
        ValueError: an empty key, an unknown severity, a bad URL, ``on``, or timeout.
    """

    kind = "pagerduty"

    def __init__(
        self,
        integration_key: str,
        on: Iterable[RunStatus | str] | None = None,
        *,
        severity: str = "error",
        url: str | None = None,
        message: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        super().__init__(on, timeout=timeout, retries=retries)
        if not isinstance(integration_key, str) or not integration_key.strip():
            raise ValueError("pagerduty integration_key is empty (an unset variable?)")
        if severity not in SEVERITIES:
            raise ValueError(
                f"pagerduty severity {severity!r} is not one of {', '.join(SEVERITIES)}"
            )
        if message is not None and not isinstance(message, str):
            raise ValueError(f"pagerduty message must be a string, got {type(message).__name__}")
        self.key = integration_key.strip()
        self.severity = severity
        self.url = check_url(
            url or os.environ.get("FLOWKIT_PAGERDUTY_URL") or DEFAULT_URL, "pagerduty url"
        )
        self.message = message or None

    def target(self) -> str:
        return url_target(self.url)

    def secrets(self) -> list[str]:
        return [self.key]

    def wants(self, status: RunStatus) -> bool:
        return status is RunStatus.SUCCEEDED or status in self.on

    def event_for(self, status: RunStatus) -> str:
        return "resolve" if status is RunStatus.SUCCEEDED else "trigger"

    def payload(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The Events API v2 request for ``summary``."""
        s = summary
        action = self.event_for(RunStatus(s["status"]))
        out: dict[str, Any] = {
            "routing_key": self.key,
            "event_action": action,
            "dedup_key": dedup_key(s["flow"], s["run_id"]),
        }
        if action == "trigger":
            details = {k: s[k] for k in ("run_id", "status", "params", "counts", "duration_s")}
            details["failed"] = [f"{f['step']}: {f['last_line']}" for f in s["failed"]]
            if s.get("resume_command"):
                details["resume_command"] = s["resume_command"]
            out["client"] = "flowkit"
            out["payload"] = {
                "summary": (self.message or headline(s))[:1024],
                "source": s["host"],
                "severity": self.severity,
                "component": s["flow"],
                "group": "flowkit",
                "class": s["status"],
                "custom_details": details,
            }
        return out

    def deliver(self, summary: dict[str, Any], deadline: Deadline) -> None:
        body = orjson.dumps(self.payload(summary))
        post(self.url, body, {"Content-Type": "application/json"}, deadline)
