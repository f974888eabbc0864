"""Real local receivers for alert tests: an HTTP server with misbehaviours, and an SMTP server.

Each listens on 127.0.0.1 on a free port, in daemon threads, and is stopped by ``close()`` (or by
leaving its ``with`` block), which also releases handlers that are hanging or trickling on purpose.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import socketserver
import ssl
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        srv = self.server
        with srv.lock:
            srv.requests.append(Received(self.path, dict(self.headers.items()), body))
            n = len(srv.requests)
        mode = srv.mode
        if mode == "hang":  # read the request, never answer
            srv.stop.wait(60)
            return
        if mode == "trickle":  # answer one byte per second (each read succeeds, the whole never)
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
            for i in range(len(answer)):
                if srv.stop.wait(1.0 if i else 0.0):
                    return
                try:
                    self.wfile.write(answer[i : i + 1])
                    self.wfile.flush()
                except OSError:
                    return
            return
        status = srv.status
        if n <= srv.fail_first:
            status = 503
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_CONNECT(self) -> None:  # as a proxy: a tunnel to host:port, bytes relayed both ways
        srv = self.server
        with srv.lock:
            srv.requests.append(Received(self.path, dict(self.headers.items()), b""))
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        back.start()
        pump(self.connection, upstream)
        back.join(10)
        upstream.close()

    def log_message(self, *args: Any) -> None:
        pass


class _HttpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    requests: list[Received]
    mode: str
    status: int
    fail_first: int
    lock: threading.Lock
    stop: threading.Event


class Receiver:
    """An HTTP receiver. ``mode``: ``ok`` (answers ``status``), ``hang`` or ``trickle``;
    ``fail_first``: that many first requests get 503."""

    def __init__(
        self,
        mode: str = "ok",
        *,
        status: int = 200,
        fail_first: int = 0,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.scheme = "https" if tls else "http"
        self.server = _HttpServer(("127.0.0.1", 0), _Handler)
        if tls is not None:  # (certificate, key): the handshake happens in the handler thread
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        self.server.requests = []
        self.server.mode, self.server.status, self.server.fail_first = mode, status, fail_first
        self.server.lock = threading.Lock()
        self.server.stop = threading.Event()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> list[Received]:
        return list(self.server.requests)

    def close(self) -> None:
        self.server.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def self_signed(folder: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = f"{folder}/cert.pem", f"{folder}/key.pem"
    cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    cmd += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(
        [*cmd, "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )
    return cert, key


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: str


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP: every message (envelope and DATA) is kept."""

    server: _SmtpServer

    def handle(self) -> None:
        if self.server.implicit and not self._secure():  # SMTPS: TLS from the first byte
            return
        self.wfile.write(b"220 localhost test SMTP\r\n")
        sender, rcpt = "", []
        while line := self.rfile.readline():
            text = line.decode().strip()
            cmd = text.upper()
            if cmd.startswith("EHLO"):
                tls = b"250-STARTTLS\r\n" if self.server.tls else b""
                self.wfile.write(b"250-localhost\r\n" + tls + b"250 AUTH PLAIN\r\n")
            elif cmd == "STARTTLS" and self.server.tls:
                self.wfile.write(b"220 ready\r\n")
                if not self._secure():
                    return
            elif cmd.startswith("HELO"):
                self.wfile.write(b"250 localhost\r\n")
            elif cmd.startswith("AUTH PLAIN"):  # "\0user\0password", base64
                _, user, password = base64.b64decode(text.split()[2]).decode().split("\0")
                self.server.logins.append((user, password))
                self.wfile.write(b"235 authenticated\r\n")
            elif cmd.startswith("MAIL FROM:"):
                sender = text[10:].strip(" <>")
                self.wfile.write(b"250 ok\r\n")
            elif cmd.startswith("RCPT TO:"):
                rcpt.append(text[8:].strip(" <>"))
                self.wfile.write(b"250 ok\r\n")
            elif cmd == "DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.server.messages.append(Mail(sender, rcpt, data.decode()))
                sender, rcpt = "", []
                self.wfile.write(b"250 queued\r\n")
            elif cmd == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # RSET, NOOP
                self.wfile.write(b"250 ok\r\n")

    def _secure(self) -> bool:
        assert self.server.tls is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.server.tls)
        try:
            self.connection = ctx.wrap_socket(self.connection, server_side=True)
        except (OSError, ssl.SSLError):
            return False  # the client did not trust us
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb", buffering=0)
        self.server.secured += 1
        return True


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    messages: list[Mail]
    logins: list[tuple[str, str]]
    tls: tuple[str, str] | None
    implicit: bool
    secured: int


class SmtpReceiver:
    """A local SMTP server; ``messages`` holds what it accepted. With ``tls`` (certificate, key)
    it offers STARTTLS, or with ``implicit`` speaks TLS from the start (SMTPS); ``secured`` counts
    the sessions that used TLS."""

    def __init__(self, tls: tuple[str, str] | None = None, *, implicit: bool = False) -> None:
        self.server = _SmtpServer(("127.0.0.1", 0), _Smtp)
        self.server.messages = []
        self.server.logins = []
        self.server.tls = tls
        self.server.implicit = implicit
        self.server.secured = 0
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def messages(self) -> list[Mail]:
        return list(self.server.messages)

    @property
    def logins(self) -> list[tuple[str, str]]:
        return list(self.server.logins)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SmtpReceiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
