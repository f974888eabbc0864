"""PagerDuty Events API v2: a failed run opens an incident, the fixed re-run resolves it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import orjson
from conftest import flowkit_env
from notifyservers import Receiver

from flowkit import Flow
from flowkit.notify import PagerDuty, dedup_key

KEY = "0123456789abcdef0123456789abcdef"

PIPELINE = """\
from pathlib import Path
from flowkit import Flow

flow = Flow("billing")

@flow.step()
def extract() -> int:
    return 41

@flow.step()
def load(extract: int, day: str = "2026-12-01") -> int:
    if not Path("fixed").exists():
        raise RuntimeError("warehouse rejected the batch\\nquota exceeded for " + day)
    return extract + 1
"""


def _run(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "flowkit", "run", "p.py:flow", "--param", "day=2026-12-02"]
    return subprocess.run(
        [*cmd, "--notify", f"pagerduty:{KEY}"],
        cwd=tmp_path,
        env=flowkit_env(FLOWKIT_PAGERDUTY_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_failed_run_triggers_and_its_fixed_rerun_resolves_the_same_incident(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.py").write_text(PIPELINE)
    with Receiver(status=202) as pd:
        first = _run(tmp_path, pd.url("/v2/enqueue"))
        assert first.returncode == 1
        (tmp_path / "fixed").touch()
        second = _run(tmp_path, pd.url("/v2/enqueue"))
        assert second.returncode == 0, second.stderr
        trigger, resolve = (r.json for r in pd.requests)
        assert {r.path for r in pd.requests} == {"/v2/enqueue"}
    assert trigger["routing_key"] == KEY and trigger["event_action"] == "trigger"
    assert resolve == {
        "routing_key": KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    run_dir = next((tmp_path / ".flowkit" / "billing").iterdir())
    assert trigger["dedup_key"] == f"flowkit/billing/{run_dir.name}"
    payload = trigger["payload"]
    assert payload["summary"] == f"flowkit: billing FAILED (run {run_dir.name})"
    assert payload["severity"] == "error" and payload["source"] == socket.gethostname()
    assert payload["component"] == "billing" and payload["class"] == "failed"
    details = payload["custom_details"]
    assert details["failed"] == ["load: quota exceeded for 2026-12-02"]
    assert details["params"] == {"day": "2026-12-02"}
    assert details["resume_command"].endswith(
        "run p.py:flow --param day=2026-12-02 --notify 'pagerduty:<redacted>'"
    )
    report = orjson.loads((run_dir / "report.json").read_bytes())
    assert report["status"] == "succeeded"  # a resumed session: extract was restored
    assert {st["name"]: st["status"] for st in report["steps"]} == {
        "extract": "cached",
        "load": "succeeded",
    }
    assert [(n["event"], n["ok"]) for n in report["notifications"]] == [("resolve", True)]


def test_severity_message_and_endpoint_are_configurable(tmp_path: Path) -> None:
    flow = Flow("paged")

    @flow.step()
    def boom() -> None:
        raise OSError("disk full")

    with Receiver(status=202) as pd:
        notifier = PagerDuty(
            KEY, severity="critical", url=pd.url("/gw"), message="Billing ETL is down"
        )
        result = flow.run(state_dir=tmp_path, notify=[notifier])
        [got] = pd.requests
    assert got.path == "/gw"
    body = got.json
    assert body["dedup_key"] == dedup_key("paged", "paged")
    assert body["payload"]["severity"] == "critical"
    assert body["payload"]["summary"] == "Billing ETL is down"
    assert result.notifications[0]["event"] == "trigger" and result.notifications[0]["ok"]


def test_a_succeeded_run_resolves_even_when_configured_for_failures() -> None:
    from flowkit.result import RunStatus

    pd = PagerDuty(KEY, on=["failed"])
    assert pd.wants(RunStatus.SUCCEEDED) and pd.event_for(RunStatus.SUCCEEDED) == "resolve"
    assert pd.wants(RunStatus.FAILED) and pd.event_for(RunStatus.FAILED) == "trigger"
    assert not pd.wants(RunStatus.TIMED_OUT)


def test_very_long_run_ids_still_give_a_valid_dedup_key() -> None:
    key = dedup_key("flow", "r" * 400)
    assert len(key) <= 255 and key == dedup_key("flow", "r" * 400)
    assert key != dedup_key("flow", "r" * 401)
