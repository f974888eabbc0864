"""E-mail alerts over SMTP: a text body with an HTML alternative."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from html import escape
from typing import Any

from ..result import RunStatus
from .base import Notifier, counts_text, headline, resume_text, text_body
from .transport import Deadline, smtp_connection, tls_context

__all__ = ["Email"]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Email(Notifier):
    """Sends the run summary by e-mail through an SMTP server.

    Every SMTP setting not given comes from the environment: ``FLOWKIT_SMTP_HOST`` (localhost),
    ``FLOWKIT_SMTP_PORT`` (25, or 465 with ``ssl``), ``FLOWKIT_SMTP_FROM`` (flowkit@<host name>),
    ``FLOWKIT_SMTP_USER`` / ``FLOWKIT_SMTP_PASSWORD`` (log in when a user is set),
    ``FLOWKIT_SMTP_STARTTLS=1`` and ``FLOWKIT_SMTP_SSL=1``.

    Args:
        to: one address, several separated by commas, or a list.
        subject: the subject (default: the run's headline, ``flowkit: daily FAILED (run ...)``).
        message: a line shown first in the body.
        Others: see :class:`Notifier`.

    Raises:
        ValueError: no recipient, an address without ``@``, a bad port, ``on`` or timeout.
    """

    kind = "email"

    def __init__(
        self,
        to: str | Iterable[str],
        *,
        subject: str | None = None,
        message: str | None = None,
        sender: str | None = None,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        starttls: bool | None = None,
        ssl: bool | None = None,
        on: Iterable[RunStatus | str] | None = None,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        super().__init__(on, timeout=timeout, retries=retries)
        env = os.environ
        self.to = [a.strip() for a in to.split(",")] if isinstance(to, str) else list(to)
        if not self.to:
            raise ValueError("email needs at least one recipient")
        for address in self.to:
            if not isinstance(address, str) or "@" not in address:
                raise ValueError(f"email recipient {address!r} is not an e-mail address")
        for name, value in (("subject", subject), ("message", message), ("sender", sender)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"email {name} must be a string, got {type(value).__name__}")
        self.subject, self.message = subject or None, message or None
        self.host = host or env.get("FLOWKIT_SMTP_HOST") or "localhost"
        self.ssl = _flag(env.get("FLOWKIT_SMTP_SSL")) if ssl is None else bool(ssl)
        self.starttls = (
            _flag(env.get("FLOWKIT_SMTP_STARTTLS")) if starttls is None else bool(starttls)
        )
        raw_port: Any = (
            port if port is not None else env.get("FLOWKIT_SMTP_PORT") or (465 if self.ssl else 25)
        )
        try:
            self.port = int(raw_port)
        except (TypeError, ValueError):
            raise ValueError(f"SMTP port must be an integer, got {raw_port!r}") from None
        if not 0 < self.port < 65536:
            raise ValueError(f"SMTP port must be in 1..65535, got {self.port}")
        self.sender = sender or env.get("FLOWKIT_SMTP_FROM") or f"flowkit@{socket.gethostname()}"
        self.user = user or env.get("FLOWKIT_SMTP_USER") or None
        self.password = password if password is not None else env.get("FLOWKIT_SMTP_PASSWORD")

    def target(self) -> str:
        return f"{', '.join(self.to)} via {self.host}:{self.port}"

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def message_for(self, summary: dict[str, Any]) -> EmailMessage:
        """The e-mail sent for ``summary``: text, with an HTML alternative."""
        msg = EmailMessage()
        msg["Subject"] = self.subject or headline(summary)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = formatdate(localtime=True)
        domain = self.sender.rpartition("@")[2] or socket.gethostname()
        msg["Message-ID"] = make_msgid("flowkit", domain=domain)
        msg.set_content(text_body(summary, self.message))
        msg.add_alternative(_html(summary, self.message), subtype="html")
        return msg

    def deliver(self, summary: dict[str, Any], deadline: Deadline) -> None:
        msg = self.message_for(summary)
        with smtp_connection(self.host, self.port, deadline, tls=self.ssl) as smtp:
            if self.starttls:
                smtp.starttls(context=tls_context())  # verifies the certificate
                if smtp.sock is not None:
                    deadline.register(smtp.sock)
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(msg)


def _html(s: dict[str, Any], message: str | None) -> str:
    e = escape
    rows = [
        ("Flow", s["flow"]),
        ("Run id", s["run_id"]),
        ("Status", s["status"]),
        ("Host", s["host"]),
        ("Steps", counts_text(s)),
        ("Duration", f"{s['duration_s']}s"),
    ]
    parts = ["<html><body>"]
    if message:
        parts.append(f"<p>{e(message)}</p>")
    parts.append(f"<h2>{e(headline(s))}</h2><table>")
    parts += [f"<tr><th align='left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows]
    parts.append("</table>")
    if s["failed"]:
        parts.append("<h3>Failed tasks</h3><ul>")
        parts += [
            f"<li><code>{e(f['step'])}</code> {e(f['status'])}: {e(f['last_line'])}</li>"
            for f in s["failed"]
        ]
        parts.append("</ul>")
    if s["status"] != "succeeded":
        parts.append(f"<p>{e(resume_text(s))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
