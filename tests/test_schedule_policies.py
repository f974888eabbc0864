"""Production schedules: catch-up after downtime, overlapping firings, DST, schedules declared
with the flow, and the crontab/systemd units ``flowkit schedule`` prints. All with an injected
clock: nothing sleeps for real."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import flowkit_env

from flowkit import Flow
from flowkit.errors import FlowDefinitionError, UsageError
from flowkit.schedule import Schedule
from flowkit.workflow import WorkflowError, load_workflow

pytest.importorskip("croniter")
UTC = timezone.utc


class FakeClock:
    """now() and sleep() that move a pretend clock instead of waiting."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += timedelta(seconds=seconds)


def _flow(clock: FakeClock, seen: list[str], takes: timedelta = timedelta(0)) -> Flow:
    """A flow whose one step records its scheduled time and moves the clock by ``takes``."""
    flow = Flow("hourly")

    @flow.step()
    def work(at: str = "") -> str:
        seen.append(at)
        clock.t += takes
        return at

    return flow


def _down_then_up(tmp_path: Path, catchup: str) -> tuple[list[str], FakeClock]:
    """Fire at 10:00, then the scheduler is down until 13:30, then it runs one more firing."""
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 9, 59, tzinfo=UTC))
    flow = _flow(clock, seen)
    kw = {"time_param": "at", "state_dir": tmp_path, "catchup": catchup}
    Schedule(flow, "0 * * * *", **kw).loop(max_runs=1, now=clock.now, sleep=clock.sleep)
    clock.t = datetime(2026, 11, 25, 13, 30, tzinfo=UTC)  # down 10:00 -> 13:30
    Schedule(flow, "0 * * * *", **kw).loop(max_runs=3, now=clock.now, sleep=clock.sleep)
    return seen, clock


def test_catchup_latest_runs_the_most_recent_missed_firing_once(tmp_path: Path) -> None:
    seen, _ = _down_then_up(tmp_path, "latest")
    assert seen == [
        "2026-11-25T10:00:00",
        "2026-11-25T13:00:00",  # caught up at once (11:00 and 12:00 are not)
        "2026-11-25T14:00:00",
        "2026-11-25T15:00:00",
    ]


def test_catchup_all_runs_each_missed_firing_in_order(tmp_path: Path) -> None:
    seen, clock = _down_then_up(tmp_path, "all")
    assert seen[1:] == ["2026-11-25T11:00:00", "2026-11-25T12:00:00", "2026-11-25T13:00:00"]
    assert clock.slept == [60.0]  # only before 10:00: the catch-up runs at once


def test_catchup_none_skips_missed_firings_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        seen, _ = _down_then_up(tmp_path, "none")
    assert seen[1:] == ["2026-11-25T14:00:00", "2026-11-25T15:00:00", "2026-11-25T16:00:00"]
    assert "3 firing(s) of hourly missed" in caplog.text and "skipping them" in caplog.text


def test_first_start_without_a_record_catches_nothing_up(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 13, 30, tzinfo=UTC))
    s = Schedule(_flow(clock, seen), "0 * * * *", time_param="at", state_dir=tmp_path)
    assert s.last_firing() is None
    s.loop(max_runs=1, now=clock.now, sleep=clock.sleep)
    assert seen == ["2026-11-25T14:00:00"]
    assert s.last_firing() == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


def test_an_unreadable_record_is_reported_and_not_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(datetime(2026, 11, 25, 13, 30, tzinfo=UTC))
    s = Schedule(_flow(clock, []), "0 * * * *", state_dir=tmp_path)
    s.record_path.parent.mkdir(parents=True)
    s.record_path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        assert s.missed(clock.now()) == []
    assert "ignoring the schedule record" in caplog.text


def test_overlap_skip_drops_firings_that_come_during_a_run_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 9, 59, tzinfo=UTC))
    flow = _flow(clock, seen, takes=timedelta(minutes=25))  # a 25-minute run, fired every 10
    s = Schedule(flow, "*/10 * * * *", time_param="at", state_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        s.loop(max_runs=2, now=clock.now, sleep=clock.sleep)
    assert seen == ["2026-11-25T10:00:00", "2026-11-25T10:30:00"]
    assert "firing of hourly at 2026-11-25T10:10:00+00:00 skipped" in caplog.text
    assert "10:20:00+00:00 skipped: the previous run was still running" in caplog.text


def test_overlap_queue_runs_firings_that_came_during_a_run_afterwards(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 9, 59, tzinfo=UTC))
    flow = _flow(clock, seen, takes=timedelta(minutes=25))
    s = Schedule(flow, "*/10 * * * *", time_param="at", overlap="queue", state_dir=tmp_path)
    s.loop(max_runs=3, now=clock.now, sleep=clock.sleep)
    assert seen == ["2026-11-25T10:00:00", "2026-11-25T10:10:00", "2026-11-25T10:20:00"]
    assert clock.slept == [60.0]


def test_dst_spring_forward_fires_the_missing_time_after_the_jump(tmp_path: Path) -> None:
    seen: list[str] = []
    paris = ZoneInfo("Europe/Paris")
    clock = FakeClock(datetime(2026, 3, 28, 12, 0, tzinfo=paris))
    s = Schedule(
        _flow(clock, seen), "30 2 * * *", time_param="at", tz="Europe/Paris", state_dir=tmp_path
    )
    s.loop(max_runs=3, now=clock.now, sleep=clock.sleep)
    # 2026-03-29 02:30 does not exist in Paris (02:00 -> 03:00): it fires at 03:00
    assert seen == ["2026-03-29T03:00:00", "2026-03-30T02:30:00", "2026-03-31T02:30:00"]


def test_dst_fall_back_fires_a_repeated_time_once(tmp_path: Path) -> None:
    seen: list[str] = []
    paris = ZoneInfo("Europe/Paris")
    clock = FakeClock(datetime(2026, 10, 24, 12, 0, tzinfo=paris))
    s = Schedule(
        _flow(clock, seen), "30 2 * * *", time_param="at", tz="Europe/Paris", state_dir=tmp_path
    )
    s.loop(max_runs=2, now=clock.now, sleep=clock.sleep)
    # 02:30 happens twice on 2026-10-25 (CEST, then CET): one firing, then the next day's
    assert seen == ["2026-10-25T02:30:00", "2026-10-26T02:30:00"]
    # the wait to the second firing spans the 25-hour day
    assert clock.slept[-1] == pytest.approx(25 * 3600)


def test_a_schedule_declared_with_the_flow_is_used_without_cron(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 0, 0, tzinfo=UTC))
    flow = Flow("daily", schedule="0 2 * * *")

    @flow.step()
    def work(at: str = "") -> str:
        seen.append(at)
        return at

    s = Schedule(flow, time_param="at", state_dir=tmp_path)
    assert s.cron == "0 2 * * *"
    s.loop(max_runs=1, now=clock.now, sleep=clock.sleep)
    assert seen == ["2026-11-25T02:00:00"]
    with pytest.raises(UsageError, match="flow 'plain' has no schedule: pass --cron"):
        Schedule(Flow("plain"))
    with pytest.raises(FlowDefinitionError, match="flow 'bad': schedule='every day'"):
        Flow("bad", schedule="every day")
    with pytest.raises(FlowDefinitionError, match="'61 2 \\* \\* \\*' is not a valid cron"):
        Flow("bad", schedule="61 2 * * *")


def test_a_workflow_file_declares_its_schedule_and_a_bad_one_names_the_line(
    tmp_path: Path,
) -> None:
    good = tmp_path / "wf.yaml"
    good.write_text("schedule: '15 3 * * 1'\ntasks:\n  a:\n    command: [\"true\"]\n")
    assert load_workflow(good).schedule == "15 3 * * 1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nschedule: 'at 3am'\ntasks:\n  a:\n    command: [\"true\"]\n")
    with pytest.raises(WorkflowError, match=r"bad\.yaml:2: schedule: 'at 3am' is not a cron"):
        load_workflow(bad)


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('daily', schedule='0 2 * * *')\n"
        "@flow.step()\ndef hello(day: str = 'x') -> str:\n    return day\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "flowkit", "schedule", "p.py:flow", *args],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_print_crontab_gives_a_line_that_runs_one_firing(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "--print-crontab", "--tz", "Europe/Paris", "--date-param", "day")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "CRON_TZ=Europe/Paris" in lines
    entry = lines[-1]
    assert entry.startswith(f"0 2 * * * cd {tmp_path} && ")
    assert "schedule p.py:flow --cron '0 2 * * *' --tz Europe/Paris --date-param day" in entry
    assert "--run-now --max-runs 1 --catchup none" in entry
    assert not (tmp_path / ".flowkit").exists()  # printing runs nothing
    # the command the line installs works as is
    cmd = entry.split(" && ", 1)[1].split(" >> ", 1)[0]
    ran = subprocess.run(
        cmd, shell=True, cwd=tmp_path, env=flowkit_env(), capture_output=True, text=True
    )
    assert ran.returncode == 0 and "[SUCCEEDED] hello" in ran.stdout, ran.stderr


def test_cli_print_systemd_gives_a_service_that_runs_the_scheduler(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "--print-systemd", "--overlap", "queue")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "[Service]" in out and "KillSignal=SIGTERM" in out and "Restart=on-failure" in out
    assert f"WorkingDirectory={tmp_path}" in out
    assert "-m flowkit schedule p.py:flow --catchup latest --overlap queue" in out


def test_cli_schedule_refuses_run_id_and_a_flow_without_schedule(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "--run-id", "mine")
    assert proc.returncode == 2 and "schedule does not take --run-id" in proc.stderr
    (tmp_path / "q.py").write_text("from flowkit import Flow\nflow = Flow('plain')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "flowkit", "schedule", "q.py:flow"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "flow 'plain' has no schedule: pass --cron" in proc.stderr


def test_catchup_after_a_long_outage_of_a_minutely_schedule_is_quick(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    seen: list[str] = []
    clock = FakeClock(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    flow = _flow(clock, seen)
    kw = {"time_param": "at", "state_dir": tmp_path}
    Schedule(flow, "* * * * *", **kw).loop(max_runs=1, now=clock.now, sleep=clock.sleep)
    clock.t = datetime(2026, 12, 1, 9, 30, 30, tzinfo=UTC)  # eleven months later
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        Schedule(flow, "* * * * *", **kw).loop(max_runs=1, now=clock.now, sleep=clock.sleep)
    assert time.perf_counter() - started < 5
    assert seen == ["2026-01-01T00:01:00", "2026-12-01T09:30:00"]
    assert "10000+ firing(s) of hourly missed" in caplog.text
