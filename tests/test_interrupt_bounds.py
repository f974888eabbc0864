"""Interrupting a run is bounded by --grace, and leaves no step process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import flowkit_env

from flowkit import Flow, Status
from flowkit.shell import ShellCommand

#: (flow, extra arguments): a Python step and a shell step, inline, on threads, in processes
LONG_STEPS = [
    ("long_python", []),
    ("long_python", ["--workers", "2"]),
    ("long_python", ["--workers", "2", "--executor", "process"]),
    ("long_shell", []),
    ("long_shell", ["--workers", "2"]),
    ("long_shell", ["--workers", "2", "--executor", "process"]),
]


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def _assert_group_ends(pgid: int) -> None:
    """The processes of group ``pgid`` are gone within a second (the kernel ends a process
    that got SIGKILL when it next runs: on a busy machine, not at once)."""
    deadline = time.monotonic() + 1.0
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _group_members(pgid) == [], "a step's process outlived flowkit"


def _start(tmp_path: Path, flow: str, *extra: str, slow: str = "20") -> subprocess.Popen[str]:
    log = tmp_path / "sig.log"
    env = flowkit_env(SIG_LOG=str(log), SLOW_SECONDS=slow, SHELL_PID_FILE=str(tmp_path / "sh.pid"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "run", f"sigflows:{flow}", *extra],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (log.exists() and "long-start" in log.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the long step never started"
        time.sleep(0.02)
    if flow == "long_shell":  # the shell wrote its pid before it logged
        while not (tmp_path / "sh.pid").read_text().strip():
            time.sleep(0.01)
    return proc


@pytest.mark.parametrize(("flow", "extra"), LONG_STEPS)
def test_sigterm_exits_130_within_the_grace_period_and_the_run_resumes(
    tmp_path: Path, flow: str, extra: list[str]
) -> None:
    proc = _start(tmp_path, flow, "--grace", "1", *extra)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 130, (out, err)
    assert took < 5, f"exited {took:.1f}s after SIGTERM with --grace 1"
    assert "long-end" not in (tmp_path / "sig.log").read_text()
    if flow == "long_shell":  # killed (SIGKILL) before flowkit exited: gone a moment later
        _assert_group_ends(int((tmp_path / "sh.pid").read_text()))
    # the same command resumes: what finished is restored, the interrupted step runs again
    env = flowkit_env(SIG_LOG=str(tmp_path / "sig.log"), SLOW_SECONDS="0")
    again = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", f"sigflows:{flow}", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    if flow == "long_python":
        assert "[CACHED]    quick" in again.stdout
    assert (tmp_path / "sig.log").read_text().split()[-1] == "long-end"


@pytest.mark.parametrize("extra", [[], ["--workers", "2", "--executor", "process"]])
def test_second_ctrl_c_kills_the_shell_step_and_its_children(
    tmp_path: Path, extra: list[str]
) -> None:
    proc = _start(tmp_path, "long_shell", *extra)
    pgid = int((tmp_path / "sh.pid").read_text())
    assert len(_group_members(pgid)) >= 2  # sh and its sleep
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 3
    _assert_group_ends(pgid)


def test_timed_out_isolated_step_does_not_stop_the_run(tmp_path: Path) -> None:
    log = tmp_path / "sig.log"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowkit",
            "run",
            "sigflows:isolated_timeout",
            "--workers",
            "2",
            "--continue-on-error",
        ],
        cwd=tmp_path,
        env=flowkit_env(SIG_LOG=str(log)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "[TIMED OUT] stuck" in proc.stdout
    assert "received" not in proc.stderr and "stopping now" not in proc.stderr
    assert "[SUCCEEDED] independent" in proc.stdout
    assert log.read_text().split() == ["independent"]


@pytest.mark.parametrize("executor", ["inline", "thread", "process"])
def test_sys_exit_and_keyboard_interrupt_in_a_step_are_step_failures(
    tmp_path: Path, executor: str
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowkit",
            "run",
            "sigflows:exits",
            "--executor",
            executor,
            "--workers",
            "2",
            "--continue-on-error",
        ],
        cwd=tmp_path,
        env=flowkit_env(SIG_LOG=str(tmp_path / "sig.log")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "[FAILED]    calls_sys_exit" in proc.stdout
    assert "[FAILED]    raises_keyboard_interrupt" in proc.stdout
    assert "[SUCCEEDED] fine" in proc.stdout
    assert "FAILED — run exits: 1 succeeded, 2 failed" in proc.stdout


def test_api_run_returns_a_failed_result_when_a_step_calls_sys_exit(tmp_path: Path) -> None:
    flow = Flow("api_exit")

    @flow.step()
    def quits() -> None:
        sys.exit(3)

    result = flow.run(state_dir=tmp_path)
    err = result["quits"].error
    assert result["quits"].status is Status.FAILED
    assert err is not None and err.type == "SystemExit" and err.message == "3"
    assert result.exit_code == 1


def test_a_real_ctrl_c_during_an_inline_step_still_stops_an_api_run(tmp_path: Path) -> None:
    flow = Flow("api_ctrl_c")

    @flow.step()
    def waits() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        flow.run(state_dir=tmp_path)
    assert time.monotonic() - started < 4


def test_killing_an_isolated_step_kills_the_shell_commands_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    flow = Flow("isolated_shell")

    @flow.step(isolate=True, timeout=0.5)
    def runs_a_command() -> str:
        # a shell command runs in a session of its own: a kill of the step's process group
        # does not reach it; the step's process must kill it when it is killed
        return ShellCommand(f"sleep 60 & echo $! > {pid_file}; echo $$ >> {pid_file}; sleep 60")()

    result = flow.run(state_dir=tmp_path)
    assert result["runs_a_command"].status is Status.TIMED_OUT
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
