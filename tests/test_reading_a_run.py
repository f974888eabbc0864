"""Reading a run: one console line per retry, the time of all attempts, timeouts, globs."""

from __future__ import annotations

import re
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from conftest import PYTHON, flowkit_env, run_flowkit

from flowkit import Flow, Status, UnknownDependencyError, step
from flowkit.attempts import AttemptLog
from flowkit.errors import StepTimeoutError
from flowkit.report import collect, render_report_html
from flowkit.result import ErrorInfo
from flowkit.store import RunStore

_flowkit = run_flowkit


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
        "ShellCommandError: command " in x and "exited with status 3" in x and "line 1" not in x
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
    report = collect(flow, flow.load_state(state_dir=tmp_path), attempts=AttemptLog.read(journal))
    (row,) = [r for r in report.steps if r.name == "slow_twice"]
    assert row.duration is not None and row.duration >= 0.6  # the table and "slowest" read it
    html = render_report_html(report)
    bars = re.findall(r'<rect class="bar st-(\w+)" data-step="slow_twice"', html)
    assert sorted(bars) == ["succeeded", "timed_out", "timed_out"]


# --- depends_on globs ---


def test_depends_on_accepts_glob_patterns_as_rerun_does(tmp_path: Path) -> None:
    flow = Flow("globs")
    order: list[str] = []

    for name in ("fetch_users", "fetch_orders", "audit"):
        flow.add(step(name=name)(_recorder(order, name)))
    flow.add(step(name="report", depends_on=["fetch_*"])(_recorder(order, "report")))
    node = flow.graph().nodes["report"]
    assert node.order_deps == ("fetch_orders", "fetch_users")
    flow.run(state_dir=tmp_path)
    assert order.index("report") > max(order.index("fetch_users"), order.index("fetch_orders"))


def _recorder(order: list[str], name: str) -> Callable[[], None]:
    def record() -> None:
        order.append(name)

    record.__name__ = name
    return record


def test_a_depends_on_pattern_that_matches_no_step_is_a_clear_error() -> None:
    flow = Flow("noglob")
    flow.add(step(name="load")(_recorder([], "load")))
    flow.add(step(name="report", depends_on=["fetch_*"])(_recorder([], "report")))
    with pytest.raises(UnknownDependencyError, match=r"'fetch_\*', a pattern that matches no"):
        flow.graph()


def test_a_workflow_depends_on_glob_orders_the_steps(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """
            name: etl
            steps:
              extract_a: "echo a >> order.txt"
              extract_b: "echo b >> order.txt"
              load:
                run: "echo load >> order.txt"
                depends_on: "extract_*"
            """
        )
    )
    done = _flowkit(tmp_path, "run", "wf.yaml", "-w", "3", "--plain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "order.txt").read_text().splitlines()[-1] == "load"
    (tmp_path / "bad.yaml").write_text(
        "steps:\n  load:\n    run: 'true'\n    depends_on: [nope_*]\n"
    )
    bad = _flowkit(tmp_path, "run", "bad.yaml")
    assert bad.returncode == 2
    assert "bad.yaml:4" in bad.stderr and "'nope_*', a pattern that matches no" in bad.stderr


def test_step_timeout_error_is_raised_for_a_timed_out_attempt(tmp_path: Path) -> None:
    flow = Flow("timeout_type")

    @flow.step(timeout=0.2, giveup_on=(StepTimeoutError,), retries=3)
    def hangs() -> None:
        time.sleep(1.0)

    result = flow.run(state_dir=tmp_path)
    assert result["hangs"].status is Status.TIMED_OUT
    assert result["hangs"].attempts == 1  # giveup_on matched the StepTimeoutError
    assert result["hangs"].error is not None and result["hangs"].error.type == "StepTimeoutError"


# --- runs: how much disk each run takes ---


def test_runs_shows_each_runs_size_and_what_fresh_kept_aside(tmp_path: Path) -> None:
    (tmp_path / "pipeline.py").write_text(
        textwrap.dedent(
            """
            import os
            from flowkit import Flow

            big = Flow("big")

            @big.step()
            def blob() -> bytes:
                return os.urandom(300_000)  # bytes are not JSON: a 300 KB side file
            """
        )
    )
    assert _flowkit(tmp_path, "run", "pipeline.py:big").returncode == 0
    runs = _flowkit(tmp_path, "runs", "pipeline.py:big")
    assert runs.returncode == 0, runs.stderr
    header, row, total = runs.stdout.splitlines()
    assert "SIZE" in header
    size = row.split()[4:6]  # RUN ID, STATUS, date, time, then the size and its unit
    assert size[1] == "KB" and 290 < float(size[0]) < 400
    assert total.startswith("1 run(s), ")
    assert _flowkit(tmp_path, "run", "pipeline.py:big", "--fresh").returncode == 0
    again = _flowkit(tmp_path, "runs", "pipeline.py:big").stdout.splitlines()
    assert "KB in big.previous)" in again[1]
    words = again[2].split()  # 1 run(s), 587.9 KB on disk
    assert words[:2] == ["1", "run(s),"] and words[3] == "KB"
    assert 580 < float(words[2]) < 800  # the run and its .previous


# --- clean --orphans ---

GRID = """
    import os

    from flowkit import Flow

    grid = Flow("grid")

    @grid.step(matrix={"depth": [int(x) for x in os.environ["DEPTHS"].split(",")]})
    def fit(depth: int) -> tuple[int, bytes]:
        print("fitting", depth)
        return depth, bytes(50_000)  # a tuple: pickled to a side file

    @grid.step()
    def best(fit: list[tuple[int, bytes]]) -> int:
        return max(d for d, _ in fit)
"""


def _grid(cwd: Path, depths: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "flowkit", *args],
        cwd=cwd,
        env=flowkit_env(DEPTHS=depths),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_clean_orphans_reclaims_the_output_of_a_value_removed_from_the_grid(
    tmp_path: Path,
) -> None:
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(GRID))
    assert _grid(tmp_path, "2,4,8", "run", "pipeline.py:grid").returncode == 0
    assert _grid(tmp_path, "2,4", "run", "pipeline.py:grid").returncode == 0
    objects = tmp_path / ".flowkit" / "grid" / "objects"
    stored = {p.name: p for p in objects.glob("*/*")}
    assert len(stored) == 3  # one object per depth: each fit returns other bytes
    store = RunStore(tmp_path / ".flowkit", "grid", "grid")
    eight = store.file_of(store.load().steps["fit[depth=8]"])
    assert eight is not None and eight.exists()
    dry = _grid(tmp_path, "2,4", "clean", "pipeline.py:grid", "--orphans", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    shown = eight.relative_to(tmp_path)
    assert dry.stdout.splitlines() == [
        f"would delete {shown} (fit[depth=8] in grid)",
        "grid: 1 unused object(s), 48.8 KB",
    ]
    assert eight.exists()
    done = _grid(tmp_path, "2,4", "clean", "pipeline.py:grid", "--orphans")
    assert done.stdout.strip() == "grid: deleted 1 unused object(s), 48.8 KB", done.stdout
    assert sorted(objects.glob("*/*")) == sorted(set(stored.values()) - {eight})
    again = _grid(tmp_path, "2,4", "run", "pipeline.py:grid", "--plain")
    assert again.returncode == 0 and "fitting" not in again.stdout
    assert "[SUCCEEDED]" not in again.stdout  # everything still used was kept
    back = _grid(tmp_path, "2,4,8", "run", "pipeline.py:grid", "--plain")
    assert back.returncode == 0
    assert "[SUCCEEDED] fit[depth=8]" in back.stdout  # its output is gone: it runs again
    nothing = _grid(tmp_path, "2,4,8", "clean", "pipeline.py:grid", "--orphans")
    assert nothing.stdout.strip() == "grid: no unused objects"
