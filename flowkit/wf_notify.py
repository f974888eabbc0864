"""A workflow's ``notifications:`` block, turned into notifiers when a run starts.

Each entry names a channel (``type: slack``) and its settings; templates in them (``{{ env.X }}``)
are rendered when the run starts, so secrets come from the environment, not the file.
``flowkit.notify.notifier_from_mapping`` builds the notifier when this flowkit has it; otherwise
slack, email and webhook entries map to :class:`~flowkit.notify.Slack`,
:class:`~flowkit.notify.Email` and :class:`~flowkit.notify.Webhook`.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Callable, Iterable, Mapping
from email.message import EmailMessage
from typing import Any

from . import notify
from .result import RunStatus

__all__ = ["EVENTS", "channel_keys", "make_notifier"]

#: The run outcomes each block speaks about (as notifiers' ``on``).
EVENTS: dict[str, tuple[str, ...]] = {
    "on_success": ("succeeded",),
    "on_failure": ("failed", "timed_out", "interrupted"),
    "on_finish": ("always",),
}

#: What the adapter below can honour (a key it would ignore is refused instead).
_FALLBACK_KEYS: dict[str, tuple[str, ...]] = {
    "slack": ("type", "webhook", "message"),
    "email": ("type", "recipients", "subject", "smtp_host", "smtp_port", "sender"),
    "webhook": ("type", "url"),
}


class _SlackWithMessage(notify.Slack):
    """Slack, with the entry's ``message`` as the first line."""

    def __init__(self, url: str, on: Iterable[str], message: str) -> None:
        super().__init__(url, on)
        self.message = message

    def send(self, summary: dict[str, Any]) -> None:
        text = notify._body(summary)
        payload = {"text": f"{self.message}\n{text}" if self.message else text}
        notify._post_json(self.url, payload, self.timeout)


class _EmailWithSubject(notify.Email):
    """Email, with the entry's ``subject`` before the run's headline."""

    def __init__(self, to: list[str], subject: str, **options: Any) -> None:
        super().__init__(to, **options)
        self.subject = subject

    def send(self, summary: dict[str, Any]) -> None:
        msg = EmailMessage()
        headline = notify._headline(summary)
        msg["Subject"] = f"{self.subject}: {headline}" if self.subject else headline
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg.set_content(notify._body(summary))
        env = os.environ
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if env.get("FLOWKIT_SMTP_STARTTLS") == "1":
                smtp.starttls()
            if env.get("FLOWKIT_SMTP_USER"):
                smtp.login(env["FLOWKIT_SMTP_USER"], env.get("FLOWKIT_SMTP_PASSWORD", ""))
            smtp.send_message(msg)


def channel_keys() -> dict[str, tuple[str, ...]]:
    """The accepted keys of each channel type."""
    keys = getattr(notify, "NOTIFIER_KEYS", None)
    if isinstance(keys, Mapping):
        return {str(k): tuple(v) for k, v in keys.items()}
    return dict(_FALLBACK_KEYS)


def make_notifier(entry: Mapping[str, Any], on: Iterable[str], where: str) -> notify.Notifier:
    """One notifier from a rendered entry; raises ValueError with a message for a bad entry."""
    build: Callable[..., notify.Notifier] | None = getattr(notify, "notifier_from_mapping", None)
    if build is not None:
        return build(entry, on, where)
    statuses = list(on)
    if "always" in statuses:
        statuses = [s.value for s in RunStatus if s is not RunStatus.RUNNING]
    kind = entry.get("type")
    if kind == "slack":
        message = entry.get("message") or ""
        return _SlackWithMessage(_text(entry, "webhook", where), statuses, str(message))
    if kind == "webhook":
        return notify.Webhook(_text(entry, "url", where), statuses)
    if kind == "email":
        to = entry.get("recipients")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or not all(isinstance(a, str) for a in to):
            raise ValueError(f"{where}: email needs 'recipients', a list of addresses")
        port = entry.get("smtp_port")
        return _EmailWithSubject(
            to,
            str(entry.get("subject") or ""),
            sender=entry.get("sender"),
            host=entry.get("smtp_host"),
            port=int(port) if port is not None else None,
            on=statuses,
        )
    raise ValueError(f"{where}: channel type {kind!r} is not available in this flowkit")


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {entry.get('type')} needs {key!r}")
    return value
