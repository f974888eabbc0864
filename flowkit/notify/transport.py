"""Bounded delivery: a wall-clock deadline over every socket of a delivery, and retries.

A socket timeout bounds each ``recv``, not a whole answer: a server that sends one byte per second
never trips it. :class:`Deadline` therefore also runs a timer that shuts down every socket the
delivery registered once the deadline passes, which unblocks whatever read or write is in
progress. (The caller additionally waits for a delivery's thread no longer than its deadline, so
even a hung name lookup cannot hold a run.)
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import smtplib
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

__all__ = [
    "Deadline",
    "DeliveryError",
    "post",
    "proxy_for",
    "retrying",
    "smtp_connection",
    "tls_context",
]

T = TypeVar("T")

#: How much of an answer is read (a receiver's answer is only checked for its status).
MAX_ANSWER = 65536


class DeliveryError(Exception):
    """A delivery attempt failed; ``retry`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Deadline:
    """A wall-clock budget for one delivery, enforced on the sockets registered with it.

    Use as a context manager: the timer starts on entry and is cancelled on exit.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.cancel()

    def remaining(self) -> float:
        """Seconds left (0 once expired)."""
        return 0.0 if self.expired else max(0.0, self.end - time.monotonic())

    def register(self, sock: socket.socket) -> socket.socket:
        """Shut ``sock`` down when the deadline passes (at once if it has); returns it."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)
        return sock

    def check(self) -> None:
        """Raise a non-retryable :class:`DeliveryError` if the deadline has passed."""
        if self.expired or time.monotonic() >= self.end:
            raise DeliveryError(f"no complete answer within {self.seconds:g}s", retry=False)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        # the plain socket's shutdown, also for an SSLSocket: it unblocks a pending read
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def retrying(
    attempt: Callable[[], T],
    deadline: Deadline,
    retries: int,
    *,
    first_delay: float = 0.5,
    on_attempt: Callable[[int], None] | None = None,
) -> T:
    """Call ``attempt`` until it succeeds, fails for good, or the deadline leaves no room.

    Retryable failures (connection errors, HTTP 5xx and 429) are retried up to ``retries`` times
    with exponential backoff from ``first_delay`` seconds; a delay that would outlast the
    deadline is not waited for.

    Raises:
        DeliveryError: the last failure.
    """
    n = 0
    while True:
        n += 1
        if on_attempt is not None:
            on_attempt(n)
        try:
            deadline.check()
            return attempt()
        except DeliveryError as exc:
            error = exc
        except (OSError, http.client.HTTPException, smtplib.SMTPException) as exc:
            # its timeout is the time left: a socket timeout can beat the deadline's timer
            # thread by a moment (smtplib reports it as a disconnect, not a TimeoutError)
            if deadline.expired or isinstance(exc, TimeoutError) or deadline.remaining() <= 0:
                error = DeliveryError(
                    f"no complete answer within {deadline.seconds:g}s", retry=False
                )
            else:
                error = DeliveryError(_describe(exc), retry=_transient(exc))
        delay = first_delay * 2 ** (n - 1)
        if not error.retry or n > retries or delay >= deadline.remaining():
            raise error
        time.sleep(delay)


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: the connection failed, not the request."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500  # 4xx: a transient SMTP failure
    return isinstance(
        exc, (ConnectionError, http.client.RemoteDisconnected, smtplib.SMTPServerDisconnected)
    ) or (isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


class _Https(http.client.HTTPSConnection):
    deadline: Deadline

    def connect(self) -> None:
        super().connect()
        self.deadline.register(self.sock)  # the TLS socket replaces the plain one


def post(
    url: str, body: bytes, headers: Mapping[str, str], deadline: Deadline
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` within ``deadline``; return the status and the answer's start.

    Raises:
        DeliveryError: the server answered with an error status (5xx and 429 are retryable).
        OSError, http.client.HTTPException: the connection failed (see :func:`retrying`).
    """
    parts = urlsplit(url)
    timeout = max(0.01, deadline.remaining())
    host, port = parts.hostname or "", parts.port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    extra: dict[str, str] = {}
    proxy = proxy_for(parts.scheme, host)
    if proxy is not None:  # as urllib does: $https_proxy / $http_proxy, unless $no_proxy says not
        if proxy.username:
            token = base64.b64encode(
                f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
            ).decode()
            extra["Proxy-Authorization"] = f"Basic {token}"
        if parts.scheme == "http":  # the proxy gets the whole URL
            host, port, path = proxy.hostname or "", proxy.port or 80, url
            headers = {**headers, **extra}
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        if proxy is not None:  # a CONNECT tunnel through the proxy, TLS to the receiver inside
            https = _Https(proxy.hostname or "", proxy.port or 80, timeout=timeout)
            https.set_tunnel(host, port, headers=extra)
        else:
            https = _Https(host, port, timeout=timeout)
        https.deadline = deadline
        conn = https
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def create_connection(address: tuple[str, int], *args: Any) -> socket.socket:
        return deadline.register(socket.create_connection(address, *args))

    conn._create_connection = create_connection  # type: ignore[attr-defined]
    try:
        conn.request("POST", path, body=body, headers={"User-Agent": "flowkit", **headers})
        response = conn.getresponse()
        answer = response.read(MAX_ANSWER)
    finally:
        conn.close()
    deadline.check()  # an answer cut short by the deadline is no answer
    status = response.status
    if status >= 300:
        reason = f"HTTP {status} {response.reason}".strip()
        raise DeliveryError(f"the server answered {reason}", retry=status >= 500 or status == 429)
    return status, answer


def proxy_for(scheme: str, host: str) -> SplitResult | None:
    """The proxy that urllib would use for ``scheme`` to ``host`` (from the environment)."""
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return urlsplit(proxy if "://" in proxy else f"http://{proxy}")


class _Smtp(smtplib.SMTP):
    def __init__(self, host: str, port: int, deadline: Deadline) -> None:
        self.deadline = deadline  # before __init__ connects
        super().__init__(host, port, timeout=max(0.01, deadline.remaining()))

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.deadline.register(super()._get_socket(host, port, timeout))  # type: ignore[misc]


class _SmtpSsl(smtplib.SMTP_SSL):
    def __init__(self, host: str, port: int, deadline: Deadline) -> None:
        self.deadline = deadline
        timeout = max(0.01, deadline.remaining())
        super().__init__(host, port, timeout=timeout, context=tls_context())

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.deadline.register(super()._get_socket(host, port, timeout))  # type: ignore[misc]


def tls_context() -> ssl.SSLContext:
    """A context that verifies certificates and host names (smtplib's default does neither)."""
    return ssl.create_default_context()


def smtp_connection(host: str, port: int, deadline: Deadline, *, tls: bool) -> smtplib.SMTP:
    """A connected SMTP client whose sockets the deadline shuts down (``tls``: SMTPS)."""
    return _SmtpSsl(host, port, deadline) if tls else _Smtp(host, port, deadline)
