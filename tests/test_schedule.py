"""Cron schedules: each firing is its own run, at the right times, with the right parameters."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import flowkit_env

from flowkit import Flow, UnknownParameterError, UsageError
from flowkit.result import RunResult
from flowkit.schedule import Schedule

pytest.importorskip("croniter")


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


def _flow(seen: list[str]) -> Flow:
    flow = Flow("nightly")

    @flow.step()
    def work(day: str = "none") -> str:
        seen.append(day)
        return day

    return flow


def test_firings_happen_at_cron_times_as_separate_runs(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 10, 2, 30, tzinfo=timezone.utc))
    runs: list[tuple[datetime, RunResult]] = []
    schedule = Schedule(_flow(seen), "*/5 * * * *", state_dir=tmp_path)
    code = schedule.loop(
        max_runs=3, now=clock.now, sleep=clock.sleep, on_result=lambda at, r: runs.append((at, r))
    )
    assert code == 0
    assert [at.strftime("%H:%M") for at, _ in runs] == ["10:05", "10:10", "10:15"]
    assert clock.slept[0] == 150.0
    assert [r.run_id for _, r in runs] == [
        "nightly-20261125T1005",
        "nightly-20261125T1010",
        "nightly-20261125T1015",
    ]
    assert all(r.ok for _, r in runs) and len(seen) == 3


def test_date_param_binds_each_firing_and_a_repeat_firing_resumes(tmp_path: Path) -> None:
    seen: list[str] = []
    flow = _flow(seen)
    clock = FakeClock(datetime(2026, 11, 24, 23, 0, tzinfo=timezone.utc))
    schedule = Schedule(flow, "0 2 * * *", date_param="day", state_dir=tmp_path)
    schedule.loop(max_runs=2, now=clock.now, sleep=clock.sleep)
    assert seen == ["2026-11-25", "2026-11-26"]
    again = schedule.fire(datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc))
    assert again["work"].status.value == "cached" and seen == ["2026-11-25", "2026-11-26"]


def test_run_now_fires_at_once(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 10, 2, tzinfo=timezone.utc))
    Schedule(_flow(seen), "0 0 1 1 *", state_dir=tmp_path).loop(
        max_runs=1, run_now=True, now=clock.now, sleep=clock.sleep
    )
    assert len(seen) == 1 and clock.slept == []


def test_bad_schedules_are_rejected_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="'61 \\* \\* \\* \\*' is not a valid cron expression"):
        Schedule(_flow([]), "61 * * * *")
    with pytest.raises(UnknownParameterError, match="'dya'"):
        Schedule(_flow([]), "0 2 * * *", date_param="dya")
    with pytest.raises(UsageError, match="time zone"):
        Schedule(_flow([]), "0 2 * * *", tz="Mars/Olympus")


def test_cli_schedule_runs_now_once_and_exits(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('sched')\n"
        "@flow.step()\ndef hello(day: str = 'x') -> str:\n    return day\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "flowkit",
        "schedule",
        "p.py:flow",
        "--cron",
        "0 2 * * *",
        "--date-param",
        "day",
        "--run-now",
        "--max-runs",
        "1",
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=flowkit_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[SUCCEEDED] hello" in proc.stdout
    bad = subprocess.run(
        [*cmd[:5], "--cron", "every day"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "'every day' is not a valid cron expression" in bad.stderr


def test_every_firing_of_a_day_is_its_own_run_even_with_a_date_param(tmp_path: Path) -> None:
    seen: list[str] = []
    clock = FakeClock(datetime(2026, 11, 25, 10, 0, 30, tzinfo=timezone.utc))
    runs: list[RunResult] = []
    schedule = Schedule(_flow(seen), "* * * * *", date_param="day", state_dir=tmp_path)
    schedule.loop(
        max_runs=3, now=clock.now, sleep=clock.sleep, on_result=lambda a, r: runs.append(r)
    )
    assert seen == ["2026-11-25"] * 3  # not `cached` after the first
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == 3
    assert [i.rsplit("-", 1)[1] for i in ids] == ["20261125T1001", "20261125T1002", "20261125T1003"]


def test_run_per_day_shares_the_days_run_with_a_manual_run_of_that_date(tmp_path: Path) -> None:
    seen: list[str] = []
    flow = _flow(seen)
    clock = FakeClock(datetime(2026, 11, 25, 10, 0, 30, tzinfo=timezone.utc))
    runs: list[RunResult] = []
    schedule = Schedule(flow, "* * * * *", date_param="day", run_per="day", state_dir=tmp_path)
    schedule.loop(
        max_runs=2, now=clock.now, sleep=clock.sleep, on_result=lambda a, r: runs.append(r)
    )
    assert seen == ["2026-11-25"]
    assert [r["work"].status.value for r in runs] == ["succeeded", "cached"]
    assert runs[0].run_id == runs[1].run_id == flow.run_id({"day": "2026-11-25"})


def test_run_per_day_without_a_date_param_names_the_run_after_the_day(tmp_path: Path) -> None:
    schedule = Schedule(_flow([]), "0 * * * *", run_per="day", state_dir=tmp_path)
    at = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
    assert schedule.run_id(at) == schedule.run_id(at + timedelta(hours=5)) == "nightly-20261125"
    with pytest.raises(UsageError, match=r"run_per='week'.*'firing'.*'day'"):
        Schedule(_flow([]), "0 2 * * *", run_per="week")


def test_a_scheduled_param_equal_to_its_default_names_the_same_run_as_leaving_it_out(
    tmp_path: Path,
) -> None:
    flow = Flow("pages")

    @flow.step()
    def fetch(n_pages: int = 22, region: str = "eu") -> int:
        return n_pages

    at = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
    plain = Schedule(flow, "0 * * * *", state_dir=tmp_path)
    same = Schedule(flow, "0 * * * *", params={"n_pages": 22}, state_dir=tmp_path)
    other = Schedule(flow, "0 * * * *", params={"n_pages": 23}, state_dir=tmp_path)
    assert plain.run_id(at) == same.run_id(at) == f"{flow.run_id()}-20261125T1000"
    assert other.run_id(at) == f"{flow.run_id({'n_pages': 23})}-20261125T1000"
    assert other.run_id(at) != plain.run_id(at)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_schedule_says_when_the_next_firing_is_at_start_and_stops_on_a_signal(
    tmp_path: Path, sig: int
) -> None:
    (tmp_path / "p.py").write_text(
        "from flowkit import Flow\nflow = Flow('sched')\n"
        "@flow.step()\ndef hello(day: str = 'x') -> str:\n    return day\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "schedule", "p.py", "--cron", "0 2 * * *"],
        cwd=tmp_path,
        env=flowkit_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout.readline() for _ in "ab"))
    reader.start()
    reader.join(timeout=20)  # the schedule waits for its firing: it says so, then sleeps
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    reader.join()
    assert "Traceback" not in err
    header, nxt = lines
    assert proc.returncode == 130
    assert header.startswith("Flow sched: scheduled at '0 2 * * *' (UTC); each firing is its own")
    due = datetime.now(timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
    if due <= datetime.now(timezone.utc):
        due += timedelta(days=1)
    assert nxt.startswith(f"Next firing at {due:%Y-%m-%d} 02:00 UTC (in ")
