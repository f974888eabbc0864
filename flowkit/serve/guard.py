"""The dashboard's gate: the token every request must carry (when there is one), and the security
headers on every response. Both are plain ASGI middleware, so they also cover event streams."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from .pages import page

__all__ = [
    "LOCAL_NAMES",
    "TOKEN_COOKIE",
    "LoopbackHosts",
    "SecurityHeaders",
    "TokenGuard",
    "host_name",
]

TOKEN_COOKIE = "flowkit_token"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenGuard:
    """Refuses every request without the token (when there is one), before any route runs."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = [
            headers.get("x-flowkit-token", ""),
            headers.get("authorization", "").removeprefix("Bearer ").strip(),
            *query.get("token", []),
            _cookie(headers.get("cookie", ""), TOKEN_COOKIE),
        ]
        if any(g and hmac.compare_digest(g.encode(), self.token.encode()) for g in given):
            if query.get("token"):  # a link with ?token=: remember it for the page's requests
                await self.app(scope, receive, _with_cookie(send, self.token))
            else:
                await self.app(scope, receive, send)
            return
        body = page(
            "flowkit · token required",
            "<h1>Token required</h1><p>This dashboard is protected by a token. Open the link "
            "<code>flowkit serve</code> printed (it ends with <code>?token=…</code>), or send "
            "the header <code>Authorization: Bearer TOKEN</code>.</p>",
        ).encode()
        await _reply(
            send, 401, body, b"text/html", [(b"www-authenticate", b'Bearer realm="flowkit"')]
        )


#: Host names a page reached through this machine's loopback interface is addressed by.
LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def host_name(header: str) -> str:
    """The host of a Host header, without its port: ``[::1]:8765`` -> ``::1``,
    ``localhost:8765`` -> ``localhost`` (lower case; '' when it cannot be read)."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 literal: [addr] or [addr]:port
        end = header.find("]")
        rest = header[end + 1 :] if end > 0 else ""
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return ""
        return header[1:end]
    host, sep, port = header.rpartition(":")
    if not sep:
        return header
    if ":" in host or not port.isdigit():  # a bare IPv6 address is not a valid Host
        return ""
    return host


class LoopbackHosts:
    """Refuses requests whose Host header does not name this machine's loopback interface
    (``localhost``, ``127.0.0.1``, ``[::1]``, with any port): a page on another site that a DNS
    name rebound to 127.0.0.1 cannot read the dashboard."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = ""
        for key, value in scope["headers"]:
            if key.lower() == b"host":
                host = host_name(value.decode("latin-1"))
                break
        if host in LOCAL_NAMES:
            await self.app(scope, receive, send)
            return
        await _reply(send, 400, b"Invalid host header", b"text/plain")


def _with_cookie(send: Send, token: str) -> Send:
    cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
        await send(message)

    return wrapped


class SecurityHeaders:
    """Security headers on every response: scripts only from /static, no framing, no referrer."""

    HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            b"img-src 'self' data:; frame-ancestors 'none'",
        ),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, wrapped)


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


async def _reply(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer a request here, without the app: ``status`` with a UTF-8 ``body``."""
    headers = [
        (b"content-type", content_type + b"; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
