"""Alerts really reach a local HTTP server (webhook, Slack) and a local SMTP server (e-mail)."""

from __future__ import annotations

import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import flowkit_env

from flowkit import Flow, RunStatus, UsageError
from flowkit.notify import Email, Slack, Webhook, notifier_from_spec


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(  # type: ignore[attr-defined]
            {"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)}
        )
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP to accept one message: every DATA block is kept."""

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        while line := self.rfile.readline():
            cmd = line.strip().upper()
            if cmd.startswith((b"EHLO", b"HELO")):
                self.wfile.write(b"250 localhost\r\n")
            elif cmd == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                self.server.messages.append(data.decode())  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif cmd == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # MAIL FROM, RCPT TO, RSET, NOOP
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _failing_flow() -> Flow:
    flow = Flow("alerting")

    @flow.step()
    def load() -> None:
        raise ConnectionError("warehouse unreachable")

    @flow.step()
    def fine() -> int:
        return 1

    return flow


def test_webhook_receives_the_summary_of_a_failed_run(
    http_server: HTTPServer, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{http_server.server_port}/hook"
    _failing_flow().run(state_dir=tmp_path, listeners=[Webhook(url)], fail_fast=False)
    [got] = http_server.received  # type: ignore[attr-defined]
    assert got["path"] == "/hook" and got["type"] == "application/json"
    body = got["body"]
    assert body["flow"] == "alerting" and body["status"] == "failed"
    assert body["failed"] == [
        {"step": "load", "status": "failed", "error": "ConnectionError: warehouse unreachable"}
    ]
    assert body["counts"] == {"failed": 1, "succeeded": 1}


def test_a_succeeded_run_alerts_only_when_asked(http_server: HTTPServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{http_server.server_port}/"
    flow = Flow("quiet")
    flow.step(name="ok")(lambda: 1)
    flow.run(state_dir=tmp_path, listeners=[Slack(url)])
    assert http_server.received == []  # type: ignore[attr-defined]
    flow.run(state_dir=tmp_path, fresh=True, listeners=[Slack(url, on=["succeeded"])])
    [got] = http_server.received  # type: ignore[attr-defined]
    assert got["body"]["text"].startswith("flowkit: quiet PASSED (run quiet)")


def test_email_alert_reaches_the_smtp_server(
    smtp_server: socketserver.ThreadingTCPServer, tmp_path: Path
) -> None:
    port = smtp_server.server_address[1]
    mail = Email("ops@example.com", sender="flowkit@example.com", host="127.0.0.1", port=port)
    _failing_flow().run(state_dir=tmp_path, listeners=[mail])
    [message] = smtp_server.messages  # type: ignore[attr-defined]
    assert "Subject: flowkit: alerting FAILED (run alerting)" in message
    assert "To: ops@example.com" in message
    assert "load failed: ConnectionError: warehouse unreachable" in message


def test_an_unreachable_alert_target_never_fails_the_run(tmp_path: Path) -> None:
    flow = Flow("unreachable")
    flow.step(name="ok")(lambda: 1)
    result = flow.run(
        state_dir=tmp_path, listeners=[Webhook("http://127.0.0.1:9/", on=["succeeded"], timeout=1)]
    )
    assert result.ok


def test_cli_notify_posts_to_a_slack_webhook(http_server: HTTPServer, tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('cli_alert')\n"
        "@flow.step()\ndef boom() -> None:\n    raise ValueError('bad row 7')\n"
    )
    url = f"http://127.0.0.1:{http_server.server_port}/slack"
    proc = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "p.py:flow", "--notify", f"slack:{url}"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    [got] = http_server.received  # type: ignore[attr-defined]
    assert "cli_alert FAILED" in got["body"]["text"] and "bad row 7" in got["body"]["text"]


def test_bad_notify_specs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown kind 'pager'"):
        notifier_from_spec("pager:123")
    with pytest.raises(UsageError, match="use webhook:URL"):
        notifier_from_spec("slack")
    with pytest.raises(UsageError, match="--notify-on"):
        notifier_from_spec("slack:http://x", on=["sometimes"])


def test_python_notifiers_accept_always_and_reject_unknown_outcomes_by_name() -> None:
    every = {s for s in RunStatus if s is not RunStatus.RUNNING}
    assert Webhook("http://127.0.0.1:9/", on=["always"]).on == every
    assert Webhook("http://127.0.0.1:9/", on=["succeeded", RunStatus.FAILED]).on == {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
    }
    with pytest.raises(UsageError, match=r"Email\(on=...\): 'sometimes' is not a way a run ends"):
        Email("ops@example.com", on=["sometimes"])
    with pytest.raises(UsageError, match=r"'running' is not a way a run ends.*'always'"):
        Webhook("http://127.0.0.1:9/", on=["running"])
