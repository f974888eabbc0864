"""A workflow's ``notifications:`` block reaches real local servers; ``{{ env.X }}`` in it is
rendered when the run starts, and an unset variable stops the run before it starts (exit 2)."""

from __future__ import annotations

import json
import socketserver
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import flowkit_env

from flowkit.workflow import load_workflow


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, json.loads(body)))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hooks() -> Iterator[HTTPServer]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _Smtp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        while line := self.rfile.readline():
            cmd = line.strip().upper()
            if cmd.startswith((b"EHLO", b"HELO")):
                self.wfile.write(b"250 localhost\r\n")
            elif cmd == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.server.messages.append(data.decode())  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif cmd == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


WORKFLOW = """
    name: alerting
    tasks:
      load: {command: "exit ${LOAD_EXIT:-0}"}
    notifications:
      on_success:
        - {type: slack, webhook: "{{ env.HOOK_BASE }}/ok", message: "Pipeline completed"}
      on_failure:
        - {type: webhook, url: "{{ env.HOOK_BASE }}/failed"}
        - {type: email, recipients: ["ops@example.com"], subject: "Pipeline failed"}
      on_finish:
        - {type: webhook, url: "{{ env.HOOK_BASE }}/finished"}
"""


def test_notifications_reach_local_servers_by_outcome(
    hooks: HTTPServer,
    smtp: socketserver.ThreadingTCPServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(WORKFLOW))
    monkeypatch.setenv("HOOK_BASE", f"http://127.0.0.1:{hooks.server_port}")
    monkeypatch.setenv("FLOWKIT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("FLOWKIT_SMTP_PORT", str(smtp.server_address[1]))
    monkeypatch.setenv("LOAD_EXIT", "3")
    flow = load_workflow(tmp_path / "wf.yaml")
    failed = flow.run(state_dir=tmp_path / "state")
    assert failed.exit_code == 1
    paths = sorted(p for p, _ in hooks.received)  # type: ignore[attr-defined]
    assert paths == ["/failed", "/finished"]
    [mail] = smtp.messages  # type: ignore[attr-defined]
    assert "ops@example.com" in mail and "alerting" in mail and "Pipeline failed" in mail
    hooks.received.clear()  # type: ignore[attr-defined]
    monkeypatch.setenv("LOAD_EXIT", "0")
    assert flow.run(state_dir=tmp_path / "state").ok
    got = dict(hooks.received)  # type: ignore[attr-defined]
    assert sorted(got) == ["/finished", "/ok"]
    assert "Pipeline completed" in json.dumps(got["/ok"])


def test_an_unset_variable_in_notifications_stops_the_run_before_it_starts(
    tmp_path: Path,
) -> None:
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(WORKFLOW))
    env = flowkit_env()
    env.pop("HOOK_BASE", None)
    run = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "wf.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "environment variable HOOK_BASE is not set" in run.stderr
    assert "wf.yaml:7: notifications.on_success[0]" in run.stderr
    assert not (tmp_path / ".flowkit").exists()  # nothing ran, nothing was written


def test_notification_entries_are_checked_when_the_file_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "tasks: {a: echo}\n"
        "notifications:\n"
        "  on_falure: []\n"
        "  on_success:\n"
        "    - {type: slack, webhok: x}\n"
        "    - {type: webhook, url: '{{ params.x }}'}\n"
    )
    from flowkit.workflow import WorkflowError

    with pytest.raises(WorkflowError) as info:
        load_workflow(tmp_path / "wf.yaml")
    text = str(info.value)
    assert ":3: notifications: unknown key 'on_falure'. Did you mean 'on_failure'?" in text
    assert ":5: notifications.on_success[0]: slack has no key 'webhok'" in text
    assert ":6: notifications.on_success[1]: notifications may read env.NAME only" in text
