"""HTTP notifiers: a signed JSON webhook and a Slack incoming webhook (Block Kit)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..result import RunStatus
from .base import Notifier, counts_text, headline, resume_text, text_body, url_secrets, url_target
from .transport import Deadline, post

__all__ = ["SIGNATURE_HEADER", "Slack", "Webhook", "sign"]

SIGNATURE_HEADER = "X-Flowkit-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Flowkit-Signature`` value: ``t=<unix ts>,v1=<hex HMAC-SHA256 of "<t>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def check_url(url: Any, what: str) -> str:
    """``url`` if it is an http(s) URL with a host.

    Raises:
        ValueError: naming ``what`` (the message never shows the URL: it may hold a key).
    """
    if not isinstance(url, str):
        raise ValueError(f"{what} must be an http(s) URL, got {type(url).__name__}")
    if not url.strip():
        raise ValueError(f"{what} is empty (an unset variable?)")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must start with http:// or https:// and name a host")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValueError(f"{what} has an invalid port") from None
    return url.strip()


class Webhook(Notifier):
    """POSTs the run summary as versioned JSON (``"version": 1``) to ``url``.

    With ``secret``, each request carries ``X-Flowkit-Signature: t=<unix ts>,v1=<hex>``, the
    HMAC-SHA256 (key: the secret) of ``f"{t}.{body}"``, so the receiver can check it came from
    you and is recent. Other arguments: see :class:`Notifier`.

    Raises:
        ValueError: ``url`` is not an http(s) URL, or a bad ``on`` / ``timeout``.
    """

    kind = "webhook"
    url_key = "url"  # what the URL is called in a workflow file's entry

    def __init__(
        self,
        url: str,
        on: Iterable[RunStatus | str] | None = None,
        *,
        secret: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        super().__init__(on, timeout=timeout, retries=retries)
        self.url = check_url(url, f"{self.kind} {self.url_key}")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError(f"{self.kind} secret must be a non-empty string")
        self.secret = secret

    def target(self) -> str:
        return url_target(self.url)

    def secrets(self) -> list[str]:
        return [*url_secrets(self.url), *([self.secret] if self.secret else [])]

    def payload(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The JSON sent for ``summary``."""
        return summary

    def deliver(self, summary: dict[str, Any], deadline: Deadline) -> None:
        body = orjson.dumps(self.payload(summary))
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        post(self.url, body, headers, deadline)


def _field(label: str, value: object) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{label}*\n{value}"[:2000]}


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


class Slack(Webhook):
    """Posts a Block Kit message to a Slack incoming webhook: ``Slack(webhook_url)``.

    The message has a headline, the flow, run id, host, step counts and duration, each failed
    step with the last line of its error, and the command that resumes the run; ``text`` holds
    the same as plain text (for notifications and clients without blocks). ``message`` is shown
    first; ``channel`` overrides the webhook's channel (where Slack allows it).
    """

    kind = "slack"
    url_key = "webhook"

    def __init__(
        self,
        url: str,
        on: Iterable[RunStatus | str] | None = None,
        *,
        message: str | None = None,
        channel: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        super().__init__(url, on, timeout=timeout, retries=retries)
        for name, value in (("message", message), ("channel", channel)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"slack {name} must be a string, got {type(value).__name__}")
        self.message, self.channel = message or None, channel or None

    def payload(self, summary: dict[str, Any]) -> dict[str, Any]:
        s = summary
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": headline(s)[:150]}}
        ]
        if self.message:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": self.message[:3000]}}
            )
        blocks.append(
            {
                "type": "section",
                "fields": [
                    _field("Flow", s["flow"]),
                    _field("Run id", s["run_id"]),
                    _field("Host", s["host"]),
                    _field("Status", s["status"]),
                    _field("Steps", counts_text(s)),
                    _field("Duration", f"{s['duration_s']}s"),
                ],
            }
        )
        if s["failed"]:
            shown = s["failed"][:10]
            lines = [
                f"• {_code(f['step'])} {f['status']}: {f['last_line'] or 'no error message'}"
                for f in shown
            ]
            if len(s["failed"]) > len(shown):
                lines.append(f"… and {len(s['failed']) - len(shown)} more")
            text = "*Failed tasks*\n" + "\n".join(lines)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
        if s["status"] != "succeeded":
            cmd = s.get("resume_command")
            hint = f"Resume: {_code(cmd)}" if cmd else resume_text(s)
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": hint[:3000]}]}
            )
        out: dict[str, Any] = {"text": text_body(s, self.message), "blocks": blocks}
        if self.channel:
            out["channel"] = self.channel
        return out
