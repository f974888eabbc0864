"""Process workers: they die with flowkit, hold no state file, and bring exceptions back whole."""

from __future__ import annotations

import glob
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import pytest
import workerflows
from conftest import PYTHON, flowkit_env
from filelock import FileLock

from flowkit import ExceptionStandIn, Flow, Status
from flowkit.errors import StepTimeoutError
from flowkit.remote import portable

linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _wait_until(cond: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(cond())  # type: ignore[operator]


# --- exceptions that do not pickle ---


def test_unpicklable_exception_is_retried_by_its_type_on_the_process_executor(
    tmp_path: Path,
) -> None:
    result = workerflows.flaky_api.run(executor="process", workers=2, state_dir=tmp_path)
    fetch = result["fetch"]
    assert fetch.status is Status.SUCCEEDED
    assert fetch.attempts == 3
    assert fetch.output == "fetched on attempt 3"
    first = fetch.attempt_errors[0]
    assert first.type == "HTTPError"
    assert first.message.startswith("HTTP Error 503: Service Unavailable")
    assert "exception not picklable" in first.message
    assert "result not picklable" not in first.message


def test_giveup_on_matches_an_unpicklable_exception_and_the_error_names_the_cause(
    tmp_path: Path,
) -> None:
    result = workerflows.gives_up.run(executor="process", state_dir=tmp_path)
    step = result["call_api"]
    assert step.status is Status.FAILED
    assert step.attempts == 1  # giveup_on=(HTTPError,) matched the stand-in
    assert step.error is not None
    assert step.error.type == "HTTPError"
    assert "HTTP Error 404" in step.error.message
    assert "exception not picklable" in step.error.message
    # the traceback is the worker's, down to the line that raised
    assert "raise _http_error(404)" in step.error.traceback


def test_exception_that_does_not_unpickle_keeps_its_type_and_attributes(tmp_path: Path) -> None:
    result = workerflows.needs_two.run(executor="process", state_dir=tmp_path)
    step = result["parse"]
    assert step.status is Status.SUCCEEDED
    assert step.attempts == 2
    (err,) = step.attempt_errors
    assert err.type == "NeedsTwoArgs"
    assert err.message.startswith("page 7: bad row")
    assert 'raise NeedsTwoArgs(7, "bad row")' in err.traceback


def test_isolated_attempt_brings_back_a_stand_in_of_the_same_type(tmp_path: Path) -> None:
    result = workerflows.isolated_api.run(executor="thread", state_dir=tmp_path)
    step = result["fetch_isolated"]
    assert step.status is Status.SUCCEEDED
    assert step.attempts == 2
    assert step.attempt_errors[0].type == "HTTPError"
    assert "exception not picklable" in step.attempt_errors[0].message


def test_stand_in_is_an_instance_of_the_original_class_with_its_picklable_attributes() -> None:
    with open(__file__, "rb") as body:
        exc = urllib.error.HTTPError("http://api.test/x", 502, "Bad Gateway", {}, body)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            pickle.dumps(exc)
        back = pickle.loads(pickle.dumps(portable(exc)))
    assert isinstance(back, urllib.error.HTTPError)
    assert isinstance(back, ExceptionStandIn)
    assert type(back).__qualname__ == "HTTPError"
    assert back.code == 502 and back.url == "http://api.test/x"
    assert str(back) == "HTTP Error 502: Bad Gateway"
    assert back.original_type == "urllib.error.HTTPError"
    assert back.pickle_error.startswith("exception not picklable")


def test_picklable_exception_is_passed_through_unchanged() -> None:
    exc = ValueError("plain")
    assert portable(exc) is exc


def test_exception_whose_class_cannot_be_imported_becomes_a_generic_stand_in() -> None:
    Hidden = type("Hidden", (Exception,), {"__module__": "no_such_module_here"})
    exc = Hidden("secret")
    exc.handle = open(__file__, "rb")  # noqa: SIM115 (an unpicklable attribute)
    try:
        back = pickle.loads(pickle.dumps(portable(exc)))
    finally:
        exc.handle.close()
    assert type(back).__mro__[1] is ExceptionStandIn
    assert back.original_type == "no_such_module_here.Hidden"
    assert str(back) == "secret"
    assert "Hidden" in back.original_traceback


def test_step_timeout_error_is_importable_from_flowkit_errors() -> None:
    import flowkit
    from flowkit import engine

    assert flowkit.StepTimeoutError is StepTimeoutError is engine.StepTimeoutError
    assert issubclass(StepTimeoutError, TimeoutError)


# --- workers die with flowkit ---

HANGING = """
    import os
    import time

    from flowkit import Flow

    hang = Flow("hang")

    def _hang(name: str) -> None:
        with open(f"{name}.{os.getpid()}.pid", "w"):
            pass
        time.sleep(120)

    @hang.step()
    def first() -> None:
        _hang("first")

    @hang.step()
    def second() -> None:
        _hang("second")
"""


def _open_files(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return out


@linux_only
def test_process_workers_die_when_flowkit_is_killed_and_hold_no_state_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(HANGING))
    proc = subprocess.Popen(
        [PYTHON, "-m", "flowkit", "run", "pipeline.py:hang", "--executor", "process", "-w", "2"],
        cwd=tmp_path,
        env=flowkit_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_until(lambda: len(glob.glob(str(tmp_path / "*.pid"))) == 2, 60)
        workers = [int(Path(p).name.split(".")[1]) for p in glob.glob(str(tmp_path / "*.pid"))]
        state = str((tmp_path / ".flowkit").resolve())
        assert not [f for w in workers for f in _open_files(w) if f.startswith(state)]
        assert any(f.endswith("journal.jsonl") for f in _open_files(proc.pid))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert _wait_until(lambda: not any(_alive(w) for w in workers), 5), "workers live on"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the run lock is free at once: nothing else holds it
    (lock,) = glob.glob(str(tmp_path / ".flowkit" / "hang" / "*" / "run.lock"))
    with FileLock(lock, timeout=0):
        pass


@linux_only
def test_a_plain_kill_ends_a_process_worker(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(HANGING))
    proc = subprocess.Popen(
        [PYTHON, "-m", "flowkit", "run", "pipeline.py:hang", "--executor", "process", "-w", "2"],
        cwd=tmp_path,
        env=flowkit_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_until(lambda: len(glob.glob(str(tmp_path / "*.pid"))) == 2, 60)
        worker = int(Path(glob.glob(str(tmp_path / "first.*.pid"))[0]).name.split(".")[1])
        os.kill(worker, signal.SIGTERM)
        assert _wait_until(lambda: not _alive(worker), 5)
    finally:
        proc.kill()
        proc.wait()


# --- a timeout from defaults kills a shell command's group ---


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_default_timeout_kills_a_shell_commands_process_group(
    tmp_path: Path, executor: str
) -> None:
    pid_file = tmp_path / "child.pid"
    flow = Flow("defaults_timeout", defaults={"timeout": 0.5})
    flow.shell("spawner", f"sleep 60 & echo $! > {pid_file}; sleep 60")
    started = time.monotonic()
    result = flow.run(executor=executor, state_dir=tmp_path)
    assert time.monotonic() - started < 10
    step = result["spawner"]
    assert step.status is Status.TIMED_OUT
    assert step.error is not None and "process group was killed" in step.error.message
    child = int(pid_file.read_text())
    assert _wait_until(lambda: not _alive(child), 5)


def test_a_shell_steps_own_timeout_wins_over_the_default(tmp_path: Path) -> None:
    flow = Flow("own_timeout", defaults={"timeout": 0.2})
    flow.shell("slowish", "sleep 0.6; echo done", timeout=30)
    result = flow.run(state_dir=tmp_path)
    assert result["slowish"].status is Status.SUCCEEDED
    assert result["slowish"].output.strip() == "done"


def test_workflow_defaults_timeout_kills_the_command_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """
            name: etl
            defaults: {timeout: 1}
            steps:
              extract: "sleep 60 & echo $! > child.pid; sleep 60"
            """
        )
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "wf.yaml"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 30
    assert done.returncode == 1, done.stderr
    assert "timed out after 1s" in done.stdout + done.stderr
    child = int((tmp_path / "child.pid").read_text())
    assert _wait_until(lambda: not _alive(child), 5)
