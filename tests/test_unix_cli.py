"""The command line behaves like a well-behaved Unix tool: pipes, exit codes, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import flowkit_env


def _closed_stdout(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run flowkit with a stdout pipe whose reader has gone (``| head`` after it exited)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", *args],
        cwd=tmp_path,
        env=flowkit_env(SIG_LOG=str(tmp_path / "sig.log"), SLOW_SECONDS="0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # before flowkit writes anything: every write meets a broken pipe
    err = proc.stderr.read() if proc.stderr is not None else ""
    return proc.wait(timeout=60), err


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_run_into_a_closed_pipe_finishes_quietly(tmp_path: Path, log_format: str) -> None:
    code, err = _closed_stdout(tmp_path, "run", "sigflows:long_python", "--log-format", log_format)
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
    assert code == 0
    assert (tmp_path / "sig.log").read_text().split() == ["quick", "long-start", "long-end"]


def test_inspection_command_into_a_closed_pipe_exits_141_quietly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "sigflows:long_python"],
        cwd=tmp_path,
        env=flowkit_env(SIG_LOG=str(tmp_path / "sig.log"), SLOW_SECONDS="0"),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0
    code, err = _closed_stdout(tmp_path, "status", "sigflows:long_python")
    assert err == ""
    assert code == 141


def test_a_failed_shell_steps_output_is_printed_once(tmp_path: Path) -> None:
    (tmp_path / "shfail.py").write_text(
        "from flowkit import Flow\n"
        "flow = Flow('shfail')\n"
        "flow.shell('bad', 'echo $((40+2))-first; echo $((50+5))-second >&2; exit 3')\n"
    )
    for executor in ("inline", "process"):
        cmd = [sys.executable, "-m", "flowkit", "run", "shfail.py", "--fresh", "-w", "2"]
        r = subprocess.run(
            [*cmd, "--executor", executor],
            cwd=tmp_path,
            env=flowkit_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1, r.stderr
        assert r.stdout.count("42-first") == 1, r.stdout
        assert r.stdout.count("55-second") == 1, r.stdout
        assert "exited with status 3" in r.stdout


PIPELINE = (
    "from flowkit import Flow\n"
    "flow = Flow('stdname')\n"
    "@flow.step()\n"
    "def a() -> int:\n"
    "    return 1\n"
)


@pytest.mark.parametrize("target", ["sub/types.py", "sub/json.py:flow"])
def test_pipeline_file_named_like_a_stdlib_module_exits_2_asking_to_rename_it(
    tmp_path: Path, target: str
) -> None:
    (tmp_path / "sub").mkdir()
    stem = Path(target.partition(":")[0]).stem
    (tmp_path / "sub" / f"{stem}.py").write_text(PIPELINE)
    r = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", target],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"the Python standard library module {stem!r}" in r.stderr
    assert f"Rename the file, e.g. to {stem}_flow.py" in r.stderr


def test_status_of_a_run_that_does_not_exist_exits_2(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "flowkit", "status", "sigflows:long_python", "--run-id", "nope"],
        cwd=tmp_path,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert "run nope of flow long_python has no state" in r.stderr
