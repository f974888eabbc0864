"""A failed step's traceback (its own frames, flowkit's trimmed) is visible from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_flowkit, run_flowkit_each

from flowkit import Flow

PIPELINE = """\
from flowkit import Flow

flow = Flow("tb")


def pick(rows):
    return rows["missing_key"]


@flow.step()
def load() -> dict:
    print("loaded 3 rows")
    return {"a": 1}


@flow.step()
def transform(load: dict) -> int:
    print("transforming")
    return pick(load)
"""


_flowkit = run_flowkit


def _assert_user_traceback(text: str) -> None:
    assert "Traceback (most recent call last):" in text
    assert "line 19, in transform" in text and "return pick(load)" in text
    assert "line 7, in pick" in text and 'return rows["missing_key"]' in text
    assert "KeyError: 'missing_key'" in text
    flowkit_dir = str(Path(__file__).parent.parent / "flowkit")
    assert flowkit_dir not in text and "concurrent/futures" not in text


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_traceback_is_shown_by_logs_status_step_explain_and_verbose_console(
    tmp_path: Path, executor: str
) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    run = _flowkit(tmp_path, "run", "pipeline.py", "-v", "-w", "2", "--executor", executor)
    assert run.returncode == 1
    _assert_user_traceback(run.stdout)
    assert "| transforming" in run.stdout  # the step's own output still follows, once
    assert run.stdout.count("return pick(load)") == 1

    logs, status, explain = run_flowkit_each(
        tmp_path,
        ["logs", "pipeline.py", "transform"],
        ["status", "pipeline.py", "--step", "transform"],
        ["explain", "pipeline.py", "transform"],
    )
    assert logs.returncode == 0
    assert "transforming" in logs.stdout
    _assert_user_traceback(logs.stdout)

    assert status.returncode == 0
    assert status.stdout.startswith("Step transform of flow tb, run tb: failed\n")
    _assert_user_traceback(status.stdout)

    assert explain.returncode == 0
    assert "Its last attempt failed: KeyError: 'missing_key'" in explain.stdout
    _assert_user_traceback(explain.stdout)


def test_default_console_shows_the_error_and_output_tail_but_no_traceback(
    tmp_path: Path,
) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    run = _flowkit(tmp_path, "run", "pipeline.py")
    assert run.returncode == 1
    assert "[FAILED]    transform (1 attempt" in run.stdout
    assert "| transforming" in run.stdout
    assert "Traceback" not in run.stdout and "return pick" not in run.stdout


def test_status_step_of_an_unknown_step_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    _flowkit(tmp_path, "run", "pipeline.py")
    r = _flowkit(tmp_path, "status", "pipeline.py", "--step", "transfrom")
    assert r.returncode == 2 and "Did you mean 'transform'?" in r.stderr


def test_stored_traceback_keeps_chained_causes_without_flowkit_frames(tmp_path: Path) -> None:
    flow = Flow("chained")

    def parse(text: str) -> int:
        return int(text)

    @flow.step()
    def reads() -> int:
        try:
            return parse("x")
        except ValueError as exc:
            raise RuntimeError("row 7 is bad") from exc

    err = flow.run(state_dir=tmp_path)["reads"].error
    assert err is not None
    tb = err.traceback
    assert "in parse" in tb and "invalid literal for int()" in tb
    assert "direct cause" in tb and tb.rstrip().endswith("RuntimeError: row 7 is bad")
    assert "flowkit/engine.py" not in tb and "flowkit/executors.py" not in tb


def test_an_error_raised_by_flowkit_itself_is_stored_as_its_one_line(tmp_path: Path) -> None:
    flow = Flow("shell_tb")
    flow.shell("broken", "exit 3")
    err = flow.run(state_dir=tmp_path)["broken"].error
    assert err is not None
    assert (
        err.traceback == "flowkit.shell.ShellCommandError: command 'exit 3' exited with status 3\n"
    )
