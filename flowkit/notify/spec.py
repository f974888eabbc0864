"""Notifiers from text: the CLI's ``--notify KIND:TARGET`` and a workflow file's entries."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import UsageError, suggest
from .base import Notifier, parse_on
from .email import Email
from .pagerduty import SEVERITIES, PagerDuty
from .webhook import Slack, Webhook

__all__ = [
    "NOTIFIER_KEYS",
    "NotifierEntryError",
    "entry_problems",
    "notifier_from_mapping",
    "notifier_from_spec",
]

#: The keys a workflow file's notification entry accepts, per ``type``.
NOTIFIER_KEYS: dict[str, tuple[str, ...]] = {
    "slack": ("type", "webhook", "message", "channel", "timeout_seconds", "retries"),
    "email": (
        "type",
        "recipients",
        "subject",
        "message",
        "sender",
        "smtp_host",
        "smtp_port",
        "smtp_user",
        "smtp_password",
        "smtp_starttls",
        "smtp_ssl",
        "timeout_seconds",
        "retries",
    ),
    "pagerduty": (
        "type",
        "integration_key",
        "routing_key",
        "severity",
        "url",
        "message",
        "timeout_seconds",
        "retries",
    ),
    "webhook": ("type", "url", "secret", "timeout_seconds", "retries"),
}

_REQUIRED: dict[str, tuple[str, ...]] = {
    "slack": ("webhook",),
    "email": ("recipients",),
    "pagerduty": ("integration_key",),
    "webhook": ("url",),
}


class NotifierEntryError(ValueError):
    """A notification entry is invalid; ``problems`` lists each one (already prefixed)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _text(value: Any) -> str | None:
    return None if value is None else value if isinstance(value, str) else str(value)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")
    return float(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _flag(value: Any, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _recipients(value: Any) -> list[str]:
    if isinstance(value, str):
        return [a.strip() for a in value.split(",") if a.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(a, str) for a in value):
        return list(value)
    raise ValueError(f"recipients must be a list of e-mail addresses, got {value!r}")


def _common(e: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "timeout_seconds" in e:
        out["timeout"] = _number(e["timeout_seconds"], "timeout_seconds")
    if "retries" in e:
        out["retries"] = _count(e["retries"], "retries")
    return out


def _slack(e: Mapping[str, Any], on: frozenset[Any]) -> Notifier:
    return Slack(
        e["webhook"],
        on,
        message=_text(e.get("message")),
        channel=_text(e.get("channel")),
        **_common(e),
    )


def _email(e: Mapping[str, Any], on: frozenset[Any]) -> Notifier:
    port = e.get("smtp_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)):
        raise ValueError(f"smtp_port must be an integer, got {port!r}")
    return Email(
        _recipients(e["recipients"]),
        subject=_text(e.get("subject")),
        message=_text(e.get("message")),
        sender=_text(e.get("sender")),
        host=_text(e.get("smtp_host")),
        port=port,
        user=_text(e.get("smtp_user")),
        password=_text(e.get("smtp_password")),
        starttls=_flag(e.get("smtp_starttls"), "smtp_starttls"),
        ssl=_flag(e.get("smtp_ssl"), "smtp_ssl"),
        on=on,
        **_common(e),
    )


def _pagerduty(e: Mapping[str, Any], on: frozenset[Any]) -> Notifier:
    key = e.get("integration_key", e.get("routing_key"))
    return PagerDuty(
        _text(key) or "",
        on,
        severity=e.get("severity", "error"),
        url=_text(e.get("url")),
        message=_text(e.get("message")),
        **_common(e),
    )


def _webhook(e: Mapping[str, Any], on: frozenset[Any]) -> Notifier:
    return Webhook(e["url"], on, secret=_text(e.get("secret")), **_common(e))


_BUILDERS: dict[str, Callable[[Mapping[str, Any], frozenset[Any]], Notifier]] = {
    "slack": _slack,
    "email": _email,
    "pagerduty": _pagerduty,
    "webhook": _webhook,
}


def entry_problems(entry: Any, where: str) -> list[str]:
    """Every problem of a workflow entry's shape (its type and keys), before any value is rendered.

    Templates in values (``{{ env.SLACK_WEBHOOK }}``) are fine here: values are checked by
    :func:`notifier_from_mapping`. Returns messages that start with ``where``; empty when the
    entry is well formed.
    """
    if not isinstance(entry, Mapping):
        return [f"{where}: a notification must be a mapping like {{type: slack, webhook: URL}}"]
    kind = entry.get("type")
    if kind not in NOTIFIER_KEYS:
        known = ", ".join(NOTIFIER_KEYS)
        if kind is None:
            return [f"{where}: notification has no 'type'; use one of {known}"]
        close = suggest(str(kind), NOTIFIER_KEYS)
        hint = f" Did you mean {close!r}?" if close else ""
        return [f"{where}: unknown notification type {kind!r}; use one of {known}.{hint}"]
    keys = NOTIFIER_KEYS[kind]
    problems = []
    for key in entry:
        if key not in keys:
            close = suggest(str(key), keys)
            hint = f" Did you mean {close!r}?" if close else ""
            problems.append(
                f"{where}: {kind} notification: unknown key {key!r}.{hint} "
                f"It accepts {', '.join(k for k in keys if k != 'type')}."
            )
    for key in _REQUIRED[kind]:
        if key not in entry and not (key == "integration_key" and "routing_key" in entry):
            problems.append(f"{where}: {kind} notification needs {key!r}")
    if kind == "pagerduty" and entry.get("severity", "error") not in SEVERITIES:
        problems.append(
            f"{where}: pagerduty severity {entry['severity']!r} is not one of "
            + ", ".join(SEVERITIES)
        )
    return problems


def notifier_from_mapping(entry: Mapping[str, Any], on: Iterable[str], where: str) -> Notifier:
    """Build one notifier from a (rendered) workflow entry such as ``{type: slack, webhook: URL}``.

    Args:
        entry: the entry; its keys per ``type`` are in :data:`NOTIFIER_KEYS`.
            ``routing_key`` is a synonym of ``integration_key``.
        on: the run outcomes it is for: ``failed``, ``timed_out``, ``interrupted``,
            ``succeeded``, or ``always``.
        where: ``file:line`` of the entry, put at the start of every message.

    Raises:
        NotifierEntryError (a ValueError): every problem of the entry, one per line, each naming
            the key and how to fix it (with a did-you-mean for a misspelt key or type). Values
            that may be secrets are never quoted.
    """
    problems = entry_problems(entry, where)
    if problems:
        raise NotifierEntryError(problems)
    kind = entry["type"]
    try:
        statuses = parse_on(list(on))
        return _BUILDERS[kind](entry, statuses)
    except ValueError as exc:
        raise NotifierEntryError([f"{where}: {kind} notification: {exc}"]) from None


def notifier_from_spec(
    spec: str, on: Iterable[str] | None = None, *, timeout: float = 10.0
) -> Notifier:
    """``webhook:URL``, ``slack:URL``, ``email:ADDRESS[,ADDRESS...]`` or ``pagerduty:KEY``.

    The CLI's ``--notify``. A webhook is signed when ``$FLOWKIT_WEBHOOK_SECRET`` is set; PagerDuty
    events go to ``$FLOWKIT_PAGERDUTY_URL`` when set. ``on``: as for :class:`Notifier` (the CLI's
    ``--notify-on``). ``timeout``: the deadline of each delivery (``--notify-timeout``).

    Raises:
        UsageError: an unknown kind, a missing or invalid target, a bad status in ``on``, or a
            timeout that is not a positive number.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise UsageError(f"--notify-timeout must be a number of seconds > 0, got {timeout!r}")
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise UsageError(
            "--notify takes KIND:TARGET: slack:URL, email:ADDRESS, pagerduty:KEY or webhook:URL"
            + (f" (got {spec!r})" if len(spec) <= 12 else "")
        )
    try:
        statuses = parse_on(on)
    except ValueError as exc:
        raise UsageError(f"--notify-on: {exc}") from None
    try:
        if kind == "webhook":
            secret = os.environ.get("FLOWKIT_WEBHOOK_SECRET") or None
            return Webhook(target, statuses, secret=secret, timeout=timeout)
        if kind == "slack":
            return Slack(target, statuses, timeout=timeout)
        if kind == "email":
            to = [a.strip() for a in target.split(",") if a.strip()]
            return Email(to, on=statuses, timeout=timeout)
        if kind == "pagerduty":
            return PagerDuty(target, statuses, timeout=timeout)
    except ValueError as exc:
        raise UsageError(f"--notify {kind}:...: {exc}") from None
    close = suggest(kind, _BUILDERS)
    hint = f" Did you mean {close!r}?" if close else ""
    raise UsageError(
        f"--notify: unknown kind {kind!r}; use webhook, slack, email or pagerduty.{hint}"
    )
