"""What a run shows about retries: one console line each, and the time of all attempts."""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import orjson
from conftest import PYTHON, flowkit_env

from flowkit import Flow, Status
from flowkit.result import ErrorInfo


def _flowkit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "flowkit", *args],
        cwd=cwd,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_shell_steps_retries_print_one_line_each_and_the_detail_goes_to_the_log(
    tmp_path: Path,
) -> None:
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """
            name: noisy
            steps:
              load:
                run: "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line $i; done; exit 3"
                retries: 4
                backoff: 0
            """
        )
    )
    done = _flowkit(tmp_path, "run", "wf.yaml", "--plain")
    assert done.returncode == 1
    retry_lines = [x for x in done.stdout.splitlines() if x.startswith("[RETRY]")]
    assert len(retry_lines) == 4
    assert all(
        "ShellCommandError: command " in x and "exited with status 3 [...]" in x
        for x in retry_lines
    )
    # no line of the command's output between the retries
    between = done.stdout.split("[RETRY]")[1:-1]
    assert all("line 7" not in chunk for chunk in between)
    logs = _flowkit(tmp_path, "logs", "wf.yaml", "load")
    assert logs.stdout.count("\nline 1\n") == 5  # every attempt's output is in the log
    assert "attempt failed: ShellCommandError" in logs.stdout


def test_headline_is_the_first_line_of_the_message_and_says_when_more_was_left_out() -> None:
    err = ErrorInfo("ShellCommandError", "command 'x' exited with status 1\nout 1\nout 2")
    assert err.headline() == "ShellCommandError: command 'x' exited with status 1 [...]"
    assert ErrorInfo("ValueError", "bad").headline() == "ValueError: bad"
    assert ErrorInfo("ValueError", "x" * 500).headline(50).endswith(" [...]")
    assert len(ErrorInfo("ValueError", "x" * 500).headline(50)) == 50


def test_a_step_that_succeeds_after_timed_out_attempts_shows_the_time_of_all_of_them(
    tmp_path: Path,
) -> None:
    flow = Flow("slow_then_ok")
    attempts = {"n": 0}

    @flow.step(timeout=0.3, retries=2, backoff=0)
    def slow_twice() -> str:
        attempts["n"] += 1
        if attempts["n"] <= 2:
            time.sleep(2.0)
        return "ok"

    started = time.monotonic()
    result = flow.run(state_dir=tmp_path, executor="thread", workers=2)
    step = result["slow_twice"]
    assert step.status is Status.SUCCEEDED and step.attempts == 3
    assert 0.6 <= step.duration_s <= time.monotonic() - started
    (journal,) = tmp_path.glob("slow_then_ok/*/journal.jsonl")
    done = [r for r in map(orjson.loads, journal.read_bytes().splitlines()) if r["ev"] == "done"]
    assert done[-1]["dur"] >= 0.6
    (log,) = tmp_path.glob("slow_then_ok/*/logs/slow_twice.log")
    text = log.read_text()
    assert "attempt 1 timed out after 0.3s (attempt abandoned)" in text
    assert "attempt 2 timed out after 0.3s (attempt abandoned)" in text
