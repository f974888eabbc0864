"""Deliveries are bounded: receivers that are down, hang or trickle never hold or fail a run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from conftest import flowkit_env, run_flowkit_each
from notifyservers import Receiver, SmtpReceiver, closed_port, self_signed

from flowkit import Flow
from flowkit.notify import Email, PagerDuty, Slack, Webhook
from flowkit.result import RunStatus


def _ok_flow(name: str = "fine") -> Flow:
    flow = Flow(name)
    flow.step(name="ok")(lambda: 1)
    return flow


def _run_dir(tmp_path: Path, flow: str) -> Path:
    return tmp_path / flow / flow


def test_a_receiver_that_is_down_is_reported_and_recorded(tmp_path: Path, caplog: object) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    t0 = time.monotonic()
    result = _ok_flow().run(state_dir=tmp_path, notify=[Webhook(url, on=["always"], timeout=3)])
    assert result.ok and result.exit_code == 0
    [d] = result.notifications
    assert d["ok"] is False and d["attempts"] == 3  # two retries with backoff (0.5s, 1s)
    assert "Connection refused" in d["error"] or "ConnectionRefusedError" in d["error"]
    assert time.monotonic() - t0 < 3.5
    report = orjson.loads((_run_dir(tmp_path, "fine") / "report.json").read_bytes())
    assert report["status"] == "succeeded" and report["notifications"] == [d]
    journal = (_run_dir(tmp_path, "fine") / "journal.jsonl").read_text().splitlines()
    last = json.loads(journal[-1])
    assert last["ev"] == "notify" and last["ok"] is False and last["notifier"] == "webhook"


def test_server_errors_are_retried_until_delivered(tmp_path: Path) -> None:
    with Receiver(fail_first=2) as r:
        result = _ok_flow().run(state_dir=tmp_path, notify=[Slack(r.url(), on=["always"])])
        assert len(r.requests) == 3
    [d] = result.notifications
    assert d["ok"] is True and d["attempts"] == 3


def test_client_errors_are_not_retried(tmp_path: Path) -> None:
    with Receiver(status=404) as r:
        result = _ok_flow().run(state_dir=tmp_path, notify=[Webhook(r.url(), on=["always"])])
        assert len(r.requests) == 1
    [d] = result.notifications
    assert d["ok"] is False and d["attempts"] == 1
    assert d["error"] == "the server answered HTTP 404 Not Found"


def test_a_hanging_receiver_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    with Receiver("hang") as r:
        t0 = time.monotonic()
        result = _ok_flow().run(
            state_dir=tmp_path, notify=[Webhook(r.url(), on=["always"], timeout=1.5)]
        )
        took = time.monotonic() - t0
        assert len(r.requests) == 1
    assert result.ok and 1.4 < took < 3.0
    [d] = result.notifications
    assert d["ok"] is False and "within 1.5s" in d["error"]


def test_a_trickling_receiver_cannot_hold_the_run(tmp_path: Path) -> None:
    with Receiver("trickle") as r:
        t0 = time.monotonic()
        result = _ok_flow().run(
            state_dir=tmp_path, notify=[Webhook(r.url(), on=["always"], timeout=2)]
        )
        took = time.monotonic() - t0
    assert result.ok and took < 3.5
    [d] = result.notifications
    assert d["ok"] is False and "no complete answer within 2s" in d["error"]


def test_notifiers_are_sent_concurrently(tmp_path: Path) -> None:
    with Receiver("hang") as a, Receiver("hang") as b, Receiver("trickle") as c:
        hooks = [Webhook(x.url(), on=["always"], timeout=1.5) for x in (a, b, c)]
        t0 = time.monotonic()
        result = _ok_flow().run(state_dir=tmp_path, notify=hooks)
        took = time.monotonic() - t0
    assert took < 3.0  # one deadline, not three
    assert [d["ok"] for d in result.notifications] == [False, False, False]


def test_the_report_views_show_each_delivery(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('shown')\n"
        "@flow.step()\ndef ok() -> int:\n    return 1\n"
    )
    with Receiver() as good:
        down = f"http://127.0.0.1:{closed_port()}/x"
        cmd = [sys.executable, "-m", "flowkit", "run", "p.py:flow", "--notify-on", "always"]
        cmd += ["--notify", f"webhook:{good.url()}", "--notify", f"slack:{down}"]
        cmd += ["--notify-timeout", "2"]
        run = subprocess.run(cmd, cwd=tmp_path, env=flowkit_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (
        f"slack alert (message) to http://127.0.0.1:{down.split(':')[2].split('/')[0]}/…"
        in run.stderr
    )
    assert "NOT delivered after 3 attempt(s)" in run.stderr
    report, status, html = run_flowkit_each(
        tmp_path,
        ["report", "p.py:flow"],
        ["status", "p.py:flow"],
        ["report", "p.py:flow", "--html", "r.html"],
    )
    lines = [x.strip() for x in report.stdout.splitlines() if x.strip().startswith("alert ")]
    assert len(lines) == 2
    assert lines[0].startswith("alert webhook (message) to http://127.0.0.1:") and lines[
        0
    ].endswith("/…: delivered")
    assert "NOT delivered after 3 attempt(s)" in lines[1]
    assert [x for x in status.stdout.splitlines() if x.startswith("alert ")] == lines
    assert html.returncode == 0
    page = (tmp_path / "r.html").read_text()
    assert '<span id="alerts">webhook (message) to http://127.0.0.1:' in page


def test_the_cli_exits_with_the_runs_own_code_when_alerts_hang(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('late')\n"
        "@flow.step()\ndef boom() -> None:\n    raise ValueError('bad row 7')\n"
    )
    with Receiver("hang") as hang, Receiver("trickle") as trickle:
        cmd = [sys.executable, "-m", "flowkit", "run", "p.py:flow", "--notify-timeout", "2"]
        cmd += ["--notify", f"slack:{hang.url()}", "--notify", f"webhook:{trickle.url()}"]
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=tmp_path,
            env=flowkit_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - t0
    assert proc.returncode == 1
    assert took < 2 + 6  # the deadline plus interpreter start-up on a busy machine
    assert proc.stderr.count("NOT delivered") == 2 and "within 2s" in proc.stderr


SECRET_PATH = "/services/T0SECRET/B0SECRET/XoXoSeCrEtToKeN42"
PD_KEY = "R0UTINGKEYsecret1234567890abcdef"


def test_secrets_never_appear_in_output_logs_reports_or_repr(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('hush')\n"
        "@flow.step()\ndef boom() -> None:\n    raise ValueError('bad row 7')\n"
    )
    port = closed_port()
    slack = f"http://127.0.0.1:{port}{SECRET_PATH}"
    env = flowkit_env(
        FLOWKIT_PAGERDUTY_URL=f"http://127.0.0.1:{port}/v2/enqueue?token=QuErYsEcReT",
        FLOWKIT_WEBHOOK_SECRET="HmAcSeCrEt",
    )
    with Receiver(status=500) as failing:
        cmd = [sys.executable, "-m", "flowkit", "run", "p.py:flow", "--notify-timeout", "2"]
        cmd += ["--notify", f"slack:{slack}", "--notify", f"pagerduty:{PD_KEY}"]
        cmd += ["--notify", f"webhook:{failing.url('/hooks/PaThSeCrEt')}", "--plain"]
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.count("NOT delivered") == 3
    report = subprocess.run(
        [sys.executable, "-m", "flowkit", "report", "p.py:flow", "--html", "r.html"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    state = tmp_path / ".flowkit" / "hush" / "hush"
    seen = "\n".join(
        [
            run.stdout,
            run.stderr,
            report.stdout,
            (tmp_path / "r.html").read_text(),
            *(p.read_text() for p in state.iterdir() if p.is_file() and p.suffix != ".lock"),
        ]
    )
    assert "notify" in (state / "journal.jsonl").read_text()
    for secret in (
        "XoXoSeCrEtToKeN42",
        "T0SECRET",
        PD_KEY,
        "QuErYsEcReT",
        "HmAcSeCrEt",
        "PaThSeCrEt",
    ):
        assert secret not in seen
    objects = [
        Slack(slack),
        PagerDuty(PD_KEY),
        Webhook(f"https://user:PaSsWoRd@example.com{SECRET_PATH}", secret="HmAcSeCrEt"),
        Email("ops@example.com", password="SmTpPaSsWoRd"),
    ]
    shown = " ".join(repr(o) for o in objects)
    for secret in ("XoXoSeCrEtToKeN42", PD_KEY, "PaSsWoRd", "HmAcSeCrEt", "SmTpPaSsWoRd"):
        assert secret not in shown


def test_an_unreachable_smtp_server_is_reported_without_its_password(tmp_path: Path) -> None:
    mail = Email(
        "ops@example.com", host="127.0.0.1", port=closed_port(), password="SmTpPaSsWoRd",
        user="etl", on=["always"], timeout=2,
    )  # fmt: skip
    result = _ok_flow().run(state_dir=tmp_path, notify=[mail])
    [d] = result.notifications
    assert result.ok and d["ok"] is False and d["notifier"] == "email"
    assert "SmTpPaSsWoRd" not in json.dumps(d) and "SmTpPaSsWoRd" not in repr(mail)


def test_an_smtp_server_that_never_greets_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    with Receiver("hang") as silent:  # accepts the connection, never says a word
        mail = Email("ops@example.com", host="127.0.0.1", port=silent.port, timeout=1.5)
        result = _ok_flow().run(state_dir=tmp_path, notify=[mail])
        assert result.ok and result.notifications == []  # by default, success sends nothing
        mail.on = frozenset({RunStatus.SUCCEEDED})
        t0 = time.monotonic()
        result = _ok_flow().run(state_dir=tmp_path, fresh=True, notify=[mail])
        assert time.monotonic() - t0 < 3.0
    [d] = result.notifications
    assert d["ok"] is False and "within 1.5s" in d["error"]


@pytest.fixture
def tls(tmp_path: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    return self_signed(str(tmp_path))


def test_https_receivers_are_reached_and_bounded_too(
    tls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls[0])  # trust the test's own certificate
    with Receiver(tls=tls) as ok, Receiver("trickle", tls=tls) as slow:
        hooks = [Webhook(x.url(), on=["always"], timeout=2) for x in (ok, slow)]
        t0 = time.monotonic()
        result = _ok_flow().run(state_dir=tmp_path, notify=hooks)
        took = time.monotonic() - t0
        assert ok.url().startswith("https://") and ok.requests[0].json["status"] == "succeeded"
    assert took < 3.5
    good, bad = result.notifications
    assert good["ok"] is True and good["target"].startswith("https://127.0.0.1:")
    assert bad["ok"] is False and "within 2s" in bad["error"]


def test_an_untrusted_certificate_fails_at_once(tls: tuple[str, str], tmp_path: Path) -> None:
    with Receiver(tls=tls) as r:
        result = _ok_flow().run(state_dir=tmp_path, notify=[Webhook(r.url(), on=["always"])])
        assert r.requests == []
    [d] = result.notifications
    assert d["ok"] is False and d["attempts"] == 1 and "CERTIFICATE_VERIFY_FAILED" in d["error"]


def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_http_alerts_go_through_the_proxy_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_proxy_settings(monkeypatch)
    with Receiver() as proxy:
        monkeypatch.setenv("http_proxy", f"http://etl:pr0xy@127.0.0.1:{proxy.port}")
        hook = Webhook("http://alerts.example.invalid/hook", on=["always"])
        result = _ok_flow().run(state_dir=tmp_path, notify=[hook])
        [got] = proxy.requests
    assert result.notifications[0]["ok"] is True
    assert got.path == "http://alerts.example.invalid/hook"
    assert got.headers["Proxy-Authorization"] == "Basic ZXRsOnByMHh5"  # etl:pr0xy
    assert got.json["flow"] == "fine"


def test_https_alerts_tunnel_through_the_proxy_unless_no_proxy_says_not(
    tls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_proxy_settings(monkeypatch)
    monkeypatch.setenv("SSL_CERT_FILE", tls[0])
    with Receiver(tls=tls) as target, Receiver() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url(""))
        hook = Webhook(target.url(), on=["always"])
        result = _ok_flow().run(state_dir=tmp_path, notify=[hook])
        assert [r.path for r in proxy.requests] == [f"127.0.0.1:{target.port}"]
        assert len(target.requests) == 1 and result.notifications[0]["ok"] is True
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        _ok_flow().run(state_dir=tmp_path, fresh=True, notify=[hook])
        assert len(proxy.requests) == 1 and len(target.requests) == 2


def test_email_starttls_verifies_the_servers_certificate(
    tls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SmtpReceiver(tls=tls) as smtp:
        mail = Email(
            "ops@example.com", host="127.0.0.1", port=smtp.port, starttls=True, on=["always"]
        )
        untrusted = _ok_flow().run(state_dir=tmp_path, notify=[mail])
        assert smtp.messages == []
        monkeypatch.setenv("SSL_CERT_FILE", tls[0])  # now trust the test's certificate
        trusted = _ok_flow().run(state_dir=tmp_path, fresh=True, notify=[mail])
        assert len(smtp.messages) == 1 and smtp.server.secured == 1
    [bad] = untrusted.notifications
    assert bad["ok"] is False and "CERTIFICATE_VERIFY_FAILED" in bad["error"]
    assert trusted.notifications[0]["ok"] is True


def test_email_over_smtps_with_the_environments_settings(
    tls: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls[0])
    with SmtpReceiver(tls=tls, implicit=True) as smtp:
        monkeypatch.setenv("FLOWKIT_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("FLOWKIT_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("FLOWKIT_SMTP_SSL", "1")
        result = _ok_flow().run(state_dir=tmp_path, notify=[Email("ops@x.org", on=["always"])])
        assert len(smtp.messages) == 1 and smtp.server.secured == 1
    assert result.notifications[0]["ok"] is True
