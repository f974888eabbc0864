"""Alerts really reach local servers: a signed webhook, Slack (Block Kit), e-mail over SMTP."""

from __future__ import annotations

import email
import hashlib
import hmac
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest
from conftest import flowkit_env
from notifyservers import Receiver, SmtpReceiver

from flowkit import Flow, FlowDefinitionError
from flowkit.notify import SIGNATURE_HEADER, Email, Slack, Webhook


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as s:
        yield s


def _failing_flow(name: str = "alerting") -> Flow:
    flow = Flow(name)

    @flow.step()
    def load() -> None:
        raise ConnectionError("warehouse unreachable\nretry budget spent: gave up on shard 3")

    @flow.step()
    def fine() -> int:
        return 1

    return flow


def verify(secret: bytes, header: str, body: bytes, max_age: int = 300) -> bool:
    """The receiver snippet of the guide's Alerts section, as printed there."""
    f = dict(p.split("=", 1) for p in header.split(","))
    mac = hmac.new(secret, f["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, f["v1"]) and abs(time.time() - int(f["t"])) < max_age


def test_webhook_posts_a_versioned_payload_with_a_verifiable_signature(
    receiver: Receiver, tmp_path: Path
) -> None:
    hook = Webhook(receiver.url("/hook"), secret="s3cret-signing-key")
    result = _failing_flow().run(state_dir=tmp_path, notify=[hook], fail_fast=False)
    [got] = receiver.requests
    assert got.path == "/hook" and got.headers["Content-Type"] == "application/json"
    assert verify(b"s3cret-signing-key", got.headers[SIGNATURE_HEADER], got.body)
    assert not verify(b"another-key", got.headers[SIGNATURE_HEADER], got.body)
    assert not verify(b"s3cret-signing-key", got.headers[SIGNATURE_HEADER], got.body + b" ")
    body = got.json
    assert body["version"] == 1 and body["event"] == "run.finished"
    assert body["flow"] == "alerting" and body["status"] == "failed"
    assert body["host"] == socket.gethostname()
    assert body["counts"] == {"failed": 1, "succeeded": 1}
    [failed] = body["failed"]
    assert failed["step"] == "load" and failed["status"] == "failed"
    assert failed["error"].startswith("ConnectionError: warehouse unreachable")
    assert failed["last_line"] == "retry budget spent: gave up on shard 3"
    assert result.notifications == [
        {
            "notifier": "webhook",
            "target": f"http://127.0.0.1:{receiver.port}/…",
            "event": "message",
            "ok": True,
            "attempts": 1,
            "duration_s": result.notifications[0]["duration_s"],
        }
    ]


def test_webhook_without_a_secret_sends_no_signature(receiver: Receiver, tmp_path: Path) -> None:
    _failing_flow().run(state_dir=tmp_path, notify=[Webhook(receiver.url())])
    [got] = receiver.requests
    assert SIGNATURE_HEADER not in got.headers


def test_slack_gets_a_block_kit_message_with_a_text_fallback(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["etl.py", "--fresh"])  # the command that started the run
    slack = Slack(receiver.url("/services/T1/B2/xyz"), message="Nightly ETL broke", channel="#ops")
    _failing_flow().run(state_dir=tmp_path, notify=[slack], fail_fast=False)
    [got] = receiver.requests
    msg = got.json
    assert msg["channel"] == "#ops"
    assert msg["text"].startswith("Nightly ETL broke\nflowkit: alerting FAILED (run alerting)")
    assert "- load failed: retry budget spent: gave up on shard 3" in msg["text"]
    blocks = msg["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "context"]
    assert blocks[0]["text"] == {
        "type": "plain_text",
        "text": "flowkit: alerting FAILED (run alerting)",
    }
    assert blocks[1]["text"]["text"] == "Nightly ETL broke"
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in blocks[2]["fields"]}
    assert fields["*Flow*"] == "alerting" and fields["*Run id*"] == "alerting"
    assert fields["*Host*"] == socket.gethostname()
    assert fields["*Steps*"] == "1 failed, 1 succeeded"
    assert fields["*Duration*"].endswith("s")
    failed = blocks[3]["text"]["text"]
    assert failed == "*Failed tasks*\n• `load` failed: retry budget spent: gave up on shard 3"
    assert blocks[4]["elements"][0]["text"] == "Resume: `python etl.py`"


def test_a_succeeded_run_alerts_only_when_asked(receiver: Receiver, tmp_path: Path) -> None:
    flow = Flow("quiet")
    flow.step(name="ok")(lambda: 1)
    flow.run(state_dir=tmp_path, notify=[Slack(receiver.url())])
    assert receiver.requests == []
    flow.run(state_dir=tmp_path, fresh=True, notify=[Slack(receiver.url(), on=["succeeded"])])
    flow.run(state_dir=tmp_path, fresh=True, notify=[Slack(receiver.url(), on=["always"])])
    texts = [r.json["text"] for r in receiver.requests]
    assert len(texts) == 2 and all(t.startswith("flowkit: quiet PASSED (run quiet)") for t in texts)
    assert all("context" not in [b["type"] for b in r.json["blocks"]] for r in receiver.requests)


def _parse(data: str) -> Message:
    return email.message_from_string(data)


def test_email_has_date_message_id_and_an_html_alternative(
    smtp: SmtpReceiver, tmp_path: Path
) -> None:
    mail = Email(
        ["ops@example.com", "data@example.com"],
        subject="Pipeline failed",
        sender="flowkit@example.com",
        host="127.0.0.1",
        port=smtp.port,
    )
    _failing_flow().run(state_dir=tmp_path, notify=[mail])
    [got] = smtp.messages
    assert got.sender == "flowkit@example.com"
    assert got.recipients == ["ops@example.com", "data@example.com"]
    msg = _parse(got.data)
    assert msg["Subject"] == "Pipeline failed"
    assert msg["To"] == "ops@example.com, data@example.com"
    assert email.utils.parsedate_to_datetime(msg["Date"]) is not None
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content_type() == "multipart/alternative"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in msg.walk()
        if not p.is_multipart()
    }
    text, html = parts["text/plain"], parts["text/html"]
    assert "flowkit: alerting FAILED (run alerting)" in text
    assert "- load failed: retry budget spent: gave up on shard 3" in text
    assert "<code>load</code> failed: retry budget spent: gave up on shard 3" in html
    assert "<h2>flowkit: alerting FAILED (run alerting)</h2>" in html


def test_email_takes_its_smtp_settings_from_the_environment(
    smtp: SmtpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWKIT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("FLOWKIT_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("FLOWKIT_SMTP_FROM", "etl@example.org")
    result = _failing_flow().run(state_dir=tmp_path, notify=[Email("ops@example.com")])
    [got] = smtp.messages
    assert got.sender == "etl@example.org"
    assert _parse(got.data)["Subject"] == "flowkit: alerting FAILED (run alerting)"
    assert result.notifications[0]["ok"] is True


def test_a_flows_own_notifiers_alert_on_every_run(receiver: Receiver, tmp_path: Path) -> None:
    flow = Flow("watched", notify=[Webhook(receiver.url(), on=["always"])])
    flow.step(name="ok")(lambda: 1)
    flow.run(state_dir=tmp_path)
    flow.run(state_dir=tmp_path, notify=[Webhook(receiver.url("/extra"), on=["succeeded"])])
    assert sorted(r.path for r in receiver.requests) == ["/extra", "/hook", "/hook"]


def test_notifiers_given_as_listeners_are_delivered_and_recorded(
    receiver: Receiver, tmp_path: Path
) -> None:
    result = _failing_flow().run(state_dir=tmp_path, listeners=[Slack(receiver.url())])
    assert len(receiver.requests) == 1 and result.notifications[0]["notifier"] == "slack"


def test_notify_takes_notifiers_only(receiver: Receiver, tmp_path: Path) -> None:
    with pytest.raises(FlowDefinitionError, match=r"notify= takes notifiers .* got str"):
        Flow("x", notify=["slack:https://hooks.slack.com/x"])  # type: ignore[list-item]
    with pytest.raises(FlowDefinitionError, match="notify= takes a list of notifiers"):
        _failing_flow().run(state_dir=tmp_path, notify="slack:https://x.example/")  # type: ignore[arg-type]
    result = _failing_flow().run(state_dir=tmp_path, notify=Slack(receiver.url()))
    assert len(receiver.requests) == 1 and result.notifications[0]["ok"]


def test_cli_notify_posts_to_a_slack_webhook(receiver: Receiver, tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('cli_alert')\n"
        "@flow.step()\ndef boom() -> None:\n    raise ValueError('bad row 7')\n"
    )
    url = receiver.url("/slack")
    proc = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "p.py:flow", "--notify", f"slack:{url}"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    [got] = receiver.requests
    text = got.json["text"]
    assert "cli_alert FAILED" in text and "bad row 7" in text
    assert "Resume: python -m flowkit run p.py:flow --notify 'slack:<redacted>'" in text


def _summary(flow: str, failed: int) -> dict[str, object]:
    return {
        "flow": flow,
        "run_id": flow,
        "status": "failed",
        "host": "etl-1",
        "duration_s": 1.5,
        "counts": {"failed": failed},
        "failed": [
            {"step": f"s{i}", "status": "failed", "error": "E: x", "last_line": "E: x"}
            for i in range(failed)
        ],
        "resume_command": None,
    }


def test_a_slack_message_stays_within_block_kit_limits() -> None:
    payload = Slack("https://hooks.slack.com/x").payload(_summary("f" * 300, 15))
    blocks = payload["blocks"]
    assert len(blocks[0]["text"]["text"]) == 150
    failed = blocks[2]["text"]["text"].splitlines()
    assert len(failed) == 1 + 10 + 1 and failed[-1] == "… and 5 more"
    assert all(len(f["text"]) <= 2000 for f in blocks[1]["fields"])
    assert blocks[3]["elements"][0]["text"] == "Run the same command again to resume."


def test_email_recipients_may_be_one_comma_separated_string() -> None:
    assert Email("a@example.com, b@example.com").to == ["a@example.com", "b@example.com"]


def test_email_logs_in_with_the_user_and_password_of_the_environment(
    smtp: SmtpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWKIT_SMTP_USER", "etl")
    monkeypatch.setenv("FLOWKIT_SMTP_PASSWORD", "SmTpPaSsWoRd")
    mail = Email("ops@example.com", host="127.0.0.1", port=smtp.port)
    result = _failing_flow().run(state_dir=tmp_path, notify=[mail])
    assert smtp.logins == [("etl", "SmTpPaSsWoRd")] and len(smtp.messages) == 1
    report = (tmp_path / "alerting" / "alerting" / "report.json").read_text()
    assert result.notifications[0]["ok"] and "SmTpPaSsWoRd" not in report + repr(mail)


def test_a_notifier_also_works_as_a_plain_event_callback(
    receiver: Receiver, tmp_path: Path
) -> None:
    hook = Webhook(receiver.url())
    result = _failing_flow().run(state_dir=tmp_path, on_event=hook.on_event)
    assert len(receiver.requests) == 1 and receiver.requests[0].json["status"] == "failed"
    assert result.notifications == []  # sent by the callback, not recorded by the run
