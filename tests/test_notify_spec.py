"""Notifiers from text: workflow-file entries (notifier_from_mapping) and --notify specs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import flowkit_env

from flowkit import UsageError
from flowkit.notify import (
    NOTIFIER_KEYS,
    Email,
    NotifierEntryError,
    PagerDuty,
    Slack,
    Webhook,
    notifier_from_mapping,
    notifier_from_spec,
)
from flowkit.notify.base import resume_command
from flowkit.result import RunStatus

WHERE = "nightly.yaml:42"
HOOK = "https://hooks.slack.com/services/T1/B2/abc"
PROBLEMS = ["failed", "timed_out", "interrupted"]


def test_a_slack_entry_becomes_a_slack_notifier() -> None:
    n = notifier_from_mapping(
        {"type": "slack", "webhook": HOOK, "message": "done", "channel": "#etl"},
        ["succeeded"],
        WHERE,
    )
    assert isinstance(n, Slack)
    assert (n.url, n.message, n.channel) == (HOOK, "done", "#etl")
    assert n.on == {RunStatus.SUCCEEDED}


def test_an_email_entry_takes_recipients_subject_and_smtp_settings() -> None:
    n = notifier_from_mapping(
        {
            "type": "email",
            "recipients": ["ops@example.com", "dev@example.com"],
            "subject": "Pipeline failed",
            "smtp_host": "mail.example.com",
            "smtp_port": 587,
            "smtp_user": "etl",
            "smtp_password": "pw",
            "smtp_starttls": True,
            "timeout_seconds": 4,
            "retries": 1,
        },
        PROBLEMS,
        WHERE,
    )
    assert isinstance(n, Email)
    assert n.to == ["ops@example.com", "dev@example.com"] and n.subject == "Pipeline failed"
    assert (n.host, n.port, n.user, n.password, n.starttls) == (
        "mail.example.com",
        587,
        "etl",
        "pw",
        True,
    )
    assert (n.timeout, n.retries) == (4.0, 1)
    assert n.on == {RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED}


def test_a_pagerduty_entry_accepts_routing_key_as_a_synonym() -> None:
    a = notifier_from_mapping({"type": "pagerduty", "integration_key": "k1"}, PROBLEMS, WHERE)
    b = notifier_from_mapping(
        {
            "type": "pagerduty",
            "routing_key": "k2",
            "severity": "warning",
            "url": "http://pd.local/e",
        },
        PROBLEMS,
        WHERE,
    )
    assert isinstance(a, PagerDuty) and isinstance(b, PagerDuty)
    assert (a.key, a.severity) == ("k1", "error")
    assert (b.key, b.severity, b.url) == ("k2", "warning", "http://pd.local/e")


def test_a_webhook_entry_takes_a_secret_and_always() -> None:
    n = notifier_from_mapping(
        {"type": "webhook", "url": "https://ci.example/hook", "secret": "s"}, ["always"], WHERE
    )
    assert isinstance(n, Webhook) and n.secret == "s"
    assert n.on == {s for s in RunStatus if s is not RunStatus.RUNNING}


def test_notifier_keys_are_exactly_what_each_type_accepts() -> None:
    assert set(NOTIFIER_KEYS) == {"slack", "email", "pagerduty", "webhook"}
    assert NOTIFIER_KEYS["slack"][:4] == ("type", "webhook", "message", "channel")
    for kind, keys in NOTIFIER_KEYS.items():
        assert "type" in keys
        with pytest.raises(NotifierEntryError, match="unknown key 'bogus'"):
            notifier_from_mapping({"type": kind, "bogus": 1}, PROBLEMS, WHERE)


def test_a_misspelt_key_gets_a_did_you_mean_and_the_location() -> None:
    with pytest.raises(ValueError) as info:
        notifier_from_mapping({"type": "slack", "webhok": HOOK}, PROBLEMS, WHERE)
    problems = info.value.problems  # type: ignore[attr-defined]
    assert problems == [
        "nightly.yaml:42: slack notification: unknown key 'webhok'. Did you mean 'webhook'? "
        "It accepts webhook, message, channel, timeout_seconds, retries.",
        "nightly.yaml:42: slack notification needs 'webhook'",
    ]


def test_a_misspelt_type_gets_a_did_you_mean() -> None:
    with pytest.raises(ValueError, match=r"nightly.yaml:42: unknown notification type 'slak'.*"
                       r"Did you mean 'slack'\?"):  # fmt: skip
        notifier_from_mapping({"type": "slak", "webhook": HOOK}, PROBLEMS, WHERE)
    with pytest.raises(ValueError, match="has no 'type'"):
        notifier_from_mapping({"webhook": HOOK}, PROBLEMS, WHERE)
    with pytest.raises(ValueError, match="must be a mapping"):
        notifier_from_mapping(["slack"], PROBLEMS, WHERE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "slack", "webhook": ""}, "slack webhook is empty"),
        ({"type": "slack", "webhook": "hooks.slack.com/x"}, "must start with http:// or https://"),
        ({"type": "email", "recipients": ["ops"]}, "'ops' is not an e-mail address"),
        ({"type": "email", "recipients": 3}, "recipients must be a list"),
        ({"type": "email", "recipients": ["a@b.c"], "smtp_port": "x"}, "smtp_port must be an"),
        ({"type": "pagerduty", "integration_key": "k", "severity": "high"}, "severity 'high'"),
        ({"type": "pagerduty", "integration_key": ""}, "integration_key is empty"),
        ({"type": "webhook", "url": "https://x.example", "timeout_seconds": 0}, "timeout_seconds"),
        ({"type": "webhook", "url": "https://x.example", "retries": -1}, "retries must be"),
    ],
)
def test_bad_values_are_named(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        notifier_from_mapping(entry, PROBLEMS, WHERE)
    assert str(info.value).startswith(WHERE)


def test_a_bad_url_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError) as info:
        notifier_from_mapping({"type": "slack", "webhook": "ftp://SeCrEt@x/y"}, PROBLEMS, WHERE)
    assert "SeCrEt" not in str(info.value)


def test_an_unknown_outcome_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'sometimes' is not a run outcome; use succeeded"):
        notifier_from_mapping({"type": "slack", "webhook": HOOK}, ["sometimes"], WHERE)
    with pytest.raises(ValueError, match="'sometimes' is not a run outcome"):
        Slack(HOOK, on=["sometimes"])
    assert Slack(HOOK, on=["always"]).on == Slack(HOOK, on=["always", "failed"]).on


def test_cli_specs_cover_every_kind() -> None:
    assert isinstance(notifier_from_spec("pagerduty:abc"), PagerDuty)
    assert isinstance(notifier_from_spec(f"slack:{HOOK}"), Slack)
    mail = notifier_from_spec("email:a@example.com, b@example.com", ["always"], timeout=3)
    assert isinstance(mail, Email) and mail.to == ["a@example.com", "b@example.com"]
    assert mail.timeout == 3.0


def test_cli_signs_webhooks_when_a_secret_is_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWKIT_WEBHOOK_SECRET", "k")
    hook = notifier_from_spec("webhook:https://ci.example/hook")
    assert isinstance(hook, Webhook) and hook.secret == "k"


def test_bad_notify_specs_are_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"unknown kind 'pager'.*Did you mean 'pagerduty'"):
        notifier_from_spec("pager:123")
    with pytest.raises(UsageError, match=r"takes KIND:TARGET: slack:URL.*\(got 'slack'\)"):
        notifier_from_spec("slack")
    with pytest.raises(UsageError) as info:
        notifier_from_spec("hooks.slack.com/services/SeCrEt")
    assert "SeCrEt" not in str(info.value)
    with pytest.raises(UsageError, match="--notify-on: 'sometimes' is not a run outcome; use"):
        notifier_from_spec(f"slack:{HOOK}", on=["sometimes"])
    with pytest.raises(UsageError, match=r"--notify slack:\.\.\.: slack webhook must start with"):
        notifier_from_spec("slack:hooks.slack.com/T1/B2/SeCrEt")
    with pytest.raises(UsageError, match="--notify-timeout"):
        notifier_from_spec(f"slack:{HOOK}", timeout=0)


def test_the_resume_command_drops_fresh_and_hides_notify_targets() -> None:
    argv = ["/venv/bin/flowkit", "run", "p:flow", "--fresh", "--notify", f"slack:{HOOK}"]
    argv += ["--notify=pagerduty:KEY", "--param", "day=a b"]
    assert resume_command(argv) == (
        "flowkit run p:flow --notify 'slack:<redacted>' '--notify=pagerduty:<redacted>' "
        "--param 'day=a b'"
    )
    assert resume_command(["/x/flowkit/__main__.py", "run", "p:f"]) == "python -m flowkit run p:f"
    assert resume_command(["pipeline.py"]) == "python pipeline.py"
    assert resume_command(["-c"]) is None and resume_command([]) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--notify", "email:ops"], "email recipient 'ops' is not an e-mail address"),
        (["--notify", "pager:abc"], "Did you mean 'pagerduty'?"),
        (["--notify", "slack:https://x.example/y", "--notify-on", "sometimes"], "--notify-on"),
        (["--notify", "slack:https://x.example/y", "--notify-timeout", "0"], "--notify-timeout"),
    ],
)
def test_the_cli_refuses_bad_notify_options_before_running(
    args: list[str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('t')\n@flow.step()\ndef a() -> int:\n    return 1\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "p.py:flow", *args],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / ".flowkit").exists()


def test_an_entrys_shape_can_be_checked_before_its_templates_are_rendered() -> None:
    from flowkit.notify import entry_problems

    ok = {"type": "slack", "webhook": "{{ env.SLACK_WEBHOOK }}", "message": "done"}
    assert entry_problems(ok, WHERE) == []
    bad = {"type": "pagerduty", "integration_kye": "{{ env.PD_KEY }}", "severity": "high"}
    assert entry_problems(bad, WHERE) == [
        "nightly.yaml:42: pagerduty notification: unknown key 'integration_kye'. "
        "Did you mean 'integration_key'? It accepts integration_key, routing_key, severity, url, "
        "message, timeout_seconds, retries.",
        "nightly.yaml:42: pagerduty notification needs 'integration_key'",
        "nightly.yaml:42: pagerduty severity 'high' is not one of critical, error, warning, info",
    ]
    assert entry_problems("slack", WHERE) == [
        "nightly.yaml:42: a notification must be a mapping like {type: slack, webhook: URL}"
    ]
