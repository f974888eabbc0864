"""Timeouts that really end the work, and clean interruption by SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import flowkit_env

from flowkit import Flow, RunStatus, Status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_isolated_step_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    env = flowkit_env(CHILD_PID_FILE=str(pid_file))
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "sigflows:spawner"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - started < 20
    assert "[TIMED OUT] spawns_children" in proc.stdout
    assert "process group was killed" in proc.stdout
    child = int(pid_file.read_text())
    _wait_for(lambda: not _alive(child))


def test_isolated_step_stuck_in_a_blocking_call_is_killed(tmp_path: Path) -> None:
    flow = Flow("stuck")

    @flow.step(isolate=True, timeout=0.3)
    def blocked() -> None:
        import threading

        threading.Event().wait()  # blocks forever

    started = time.monotonic()
    result = flow.run(state_dir=tmp_path)
    assert result["blocked"].status is Status.TIMED_OUT
    assert time.monotonic() - started < 10


def test_isolated_step_returns_its_value_and_can_fail(tmp_path: Path) -> None:
    flow = Flow("iso")

    @flow.step(isolate=True)
    def child_pid() -> int:
        return os.getpid()

    @flow.step(isolate=True, depends_on=["child_pid"])
    def boom() -> None:
        raise ValueError("from the child")

    result = flow.run(state_dir=tmp_path)
    assert result["child_pid"].output != os.getpid()
    err = result["boom"].error
    assert err is not None and err.type == "ValueError" and err.message == "from the child"


def test_timed_out_step_is_retried_per_its_policy(tmp_path: Path) -> None:
    flow = Flow("retrytimeout")
    attempts = {"n": 0}

    @flow.step(timeout=0.2, retries=1)
    def slow_once() -> str:
        attempts["n"] += 1
        if attempts["n"] == 1:
            time.sleep(1.0)
        return "ok"

    result = flow.run(state_dir=tmp_path)
    assert result["slow_once"].status is Status.SUCCEEDED
    assert result["slow_once"].attempts == 2
    assert "timed out" in str(result["slow_once"].attempt_errors[0])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_interrupts_cleanly_and_a_rerun_resumes(tmp_path: Path, sig: int) -> None:
    log = tmp_path / "sig.log"
    env = flowkit_env(SIG_LOG=str(log), SLOW_SECONDS="1.0")
    cmd = [sys.executable, "-m", "flowkit", "run", "sigflows:interruptible"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(lambda: log.exists() and "slow-start" in log.read_text())
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "INTERRUPTED" in out and "Run the same command again to resume" in out
    # the running step was given its grace period and finished; nothing after it started
    assert log.read_text().split() == ["first", "slow-start", "slow"]
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert again.returncode == 0, again.stderr
    assert "[CACHED]    first" in again.stdout and "[CACHED]    slow" in again.stdout
    assert log.read_text().split() == ["first", "slow-start", "slow", "last"]


def test_second_ctrl_c_exits_at_once_leaving_a_loadable_journal(tmp_path: Path) -> None:
    log = tmp_path / "sig.log"
    env = flowkit_env(SIG_LOG=str(log), SLOW_SECONDS="30")
    cmd = [sys.executable, "-m", "flowkit", "run", "sigflows:interruptible"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(lambda: log.exists() and "slow-start" in log.read_text())
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert time.monotonic() - started < 5
    sys.path.insert(0, str(Path(__file__).parent))
    import sigflows

    state = sigflows.interruptible.load_state(state_dir=tmp_path / ".flowkit")
    assert state.steps["first"]["status"] == "succeeded"
    assert "slow" not in state.steps


def test_api_run_reports_interrupted_status_when_signals_handled(tmp_path: Path) -> None:
    flow = Flow("selfsignal")

    @flow.step()
    def sends() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    @flow.step(depends_on=["sends"])
    def never() -> None: ...

    result = flow.run(state_dir=tmp_path, handle_signals=True)
    assert result.status is RunStatus.INTERRUPTED and result.exit_code == 130
    assert result["sends"].status is Status.SUCCEEDED
    assert result["never"].status is Status.PENDING


def test_process_executor_kills_a_step_past_its_timeout(tmp_path: Path) -> None:
    import flows_timeout

    started = time.monotonic()
    result = flows_timeout.hangs.run(state_dir=tmp_path, executor="process", workers=2)
    assert time.monotonic() - started < 15
    assert result["stuck"].status is Status.TIMED_OUT
    assert result["stuck"].error is not None
    assert "process group was killed" in result["stuck"].error.message
    assert result["fine"].status is Status.SUCCEEDED


def test_status_shows_a_running_step_then_interrupted_after_a_kill(tmp_path: Path) -> None:
    log = tmp_path / "sig.log"
    env = flowkit_env(SIG_LOG=str(log), SLOW_SECONDS="30")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "run", "sigflows:interruptible"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: log.exists() and "slow-start" in log.read_text())
        status = [sys.executable, "-m", "flowkit", "status", "sigflows:interruptible"]
        during = subprocess.run(
            status, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
        )
        assert "running (pid" in during.stdout
        rows = {line.split()[0]: line.split()[1] for line in during.stdout.splitlines()[2:]}
        assert rows == {"first": "succeeded", "slow": "running", "last": "pending"}
    finally:
        proc.kill()
        proc.wait()
    after = subprocess.run(
        status, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    rows = {line.split()[0]: line.split()[1] for line in after.stdout.splitlines()[2:]}
    assert rows["slow"] == "interrupted"


def test_interrupt_during_a_long_retry_wait_stops_at_once(tmp_path: Path) -> None:
    flow = Flow("longwait")

    @flow.step(retries=1, backoff=60)
    def flaky() -> None:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        raise OSError("down")

    started = time.monotonic()
    result = flow.run(state_dir=tmp_path, handle_signals=True)
    assert time.monotonic() - started < 10
    assert result.status is RunStatus.INTERRUPTED
