"""The command line: targets, exit codes, output, parameters, dry runs, code changes, selection,
failure modes and the inspection commands.

Exit codes are checked on real ``python -m flowkit`` subprocesses; pure output checks call
``flowkit.cli.main`` in-process (faster) with the pipeline loaded from a file in ``tmp_path``.
"""

from __future__ import annotations

import importlib
import json
import linecache
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from cliflows import (
    BRANCHES,
    FLAKY,
    PIPELINE,
    PROJ_HELPERS,
    PROJ_PIPELINE,
    TWO_FLOWS,
    TYPED,
    edit,
    flowkit,
    ran,
    write,
)

from flowkit.cli import main

ALL_STEPS = ["fetch", "transform", "report", "archive"]
STEP_LINE = re.compile(
    r"^\[(?P<status>SUCCEEDED|FAILED)\]\s+(?P<name>\w+) "
    r"\((?P<attempts>\d+) attempts?, (?P<dur>\d+ms|\d+\.\d\ds|\d+m\d+\.\ds)\)"
)
SUMMARY = re.compile(
    r"^Flow (?P<flow>\w+) (?P<verdict>PASSED|FAILED) — run (?P<run>\S+): (?P<counts>.+) in "
)


class Result(NamedTuple):
    """What ``cli(...)`` returns: the same fields as a finished subprocess."""

    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., Result]


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """The daily pipeline (fetch -> transform -> report, archive after report) in tmp_path."""
    return write(tmp_path, "pipeline.py", PIPELINE)


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    """``main([...])`` in-process: returns (exit code, stdout, stderr) as a :class:`Result`.

    Before each call, modules loaded from tmp_path are forgotten (so an edited pipeline is loaded
    afresh, like a new process would); afterwards sys.path and sys.modules are restored.
    """
    saved_path = list(sys.path)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def forget() -> None:
        for name, mod in list(sys.modules.items()):
            if str(getattr(mod, "__file__", "") or "").startswith(str(tmp_path)):
                del sys.modules[name]
        linecache.clearcache()
        importlib.invalidate_caches()

    def call(*args: str) -> Result:
        forget()
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    yield call
    forget()
    sys.path[:] = saved_path


def step_lines(stdout: str) -> dict[str, re.Match[str]]:
    return {m["name"]: m for line in stdout.splitlines() if (m := STEP_LINE.match(line))}


def plan_lines(stdout: str) -> dict[str, str]:
    """``--dry-run`` output: step name -> the rest of its line (verdict and reason)."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        m = re.match(r"^  (cached|run|skip)\s+(\w+)(.*)$", line)
        if m:
            out[m[2]] = f"{m[1]}{m[3]}"
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


# --- targets --------------------------------------------------------------------------------------


def test_run_module_target_from_working_directory(tmp_path: Path, pipeline: Path) -> None:
    r = flowkit("run", "pipeline:daily", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ran(tmp_path) == ALL_STEPS
    assert (tmp_path / "report-2026-11-25.txt").read_text() == "sales for 2026-11-25"
    assert "Flow daily PASSED" in r.stdout


def test_run_file_target_in_other_folder_imports_its_sibling_module(tmp_path: Path) -> None:
    write(tmp_path, "proj/pipeline.py", PROJ_PIPELINE)
    write(tmp_path, "proj/shop_helpers.py", PROJ_HELPERS)
    r = flowkit("run", "proj/pipeline.py:shop", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ran(tmp_path) == ["load", "price", "publish"]
    assert (tmp_path / "published.txt").read_text() == "widgets=70"
    assert (tmp_path / ".flowkit" / "shop" / "shop" / "journal.jsonl").is_file()


def test_target_without_attribute_uses_the_only_flow(tmp_path: Path, pipeline: Path) -> None:
    r = flowkit("run", "pipeline", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Flow daily: starting run daily ")
    assert ran(tmp_path) == ALL_STEPS


def test_module_with_two_flows_and_no_attribute_exits_2_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "two.py", TWO_FLOWS)
    r = flowkit("run", "two", cwd=tmp_path)
    assert r.returncode == 2
    assert "daily" in r.stderr and "weekly" in r.stderr
    assert "two:daily" in r.stderr  # how to name one
    assert not (tmp_path / ".flowkit").exists()


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ("nosuchmodule:daily", "cannot find module 'nosuchmodule'"),
        ("nowhere/pipe.py:daily", "no such file: nowhere/pipe.py"),
        ("pipeline:weekly", "pipeline:weekly does not exist. Flows in pipeline: daily."),
        ("broken_syntax.py:daily", "SyntaxError"),
        ("needs_missing_lib", "No module named 'nonexistent_lib_xyz'"),
    ],
    ids=["missing-module", "missing-file", "missing-attribute", "syntax-error", "missing-import"],
)
def test_unloadable_target_exits_2_naming_what_is_missing(
    tmp_path: Path, pipeline: Path, target: str, named: str
) -> None:
    write(tmp_path, "broken_syntax.py", "from flowkit import Flow\ndaily = Flow('d')\ndef f(:\n")
    write(tmp_path, "needs_missing_lib.py", "import nonexistent_lib_xyz\n")
    r = flowkit("run", target, cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert r.stderr.count("flowkit: error:") == 1
    assert named in r.stderr
    if target.startswith("broken_syntax"):
        assert "broken_syntax.py, line 3" in r.stderr
    assert not (tmp_path / ".flowkit").exists()


# --- exit codes ----------------------------------------------------------------------------------


def test_all_succeeded_exits_0_and_all_cached_exits_0(tmp_path: Path, pipeline: Path) -> None:
    assert flowkit("run", "pipeline:daily", cwd=tmp_path).returncode == 0
    again = flowkit("run", "pipeline:daily", cwd=tmp_path)
    assert again.returncode == 0
    assert "4 cached" in again.stdout


def test_failed_step_exits_1_reporting_step_error_and_how_to_resume(tmp_path: Path) -> None:
    write(tmp_path, "branches.py", BRANCHES)
    r = flowkit("run", "branches:branches", cwd=tmp_path)
    assert r.returncode == 1
    lines = step_lines(r.stdout)
    assert lines["broken"]["status"] == "FAILED"
    failed_line = next(x for x in r.stdout.splitlines() if x.startswith("[FAILED]"))
    assert failed_line.endswith("ValueError: disk on fire")
    summary = next(m for x in r.stdout.splitlines() if (m := SUMMARY.match(x)))
    assert summary["verdict"] == "FAILED"
    assert "1 failed" in summary["counts"]
    assert "  broken: ValueError: disk on fire" in r.stdout
    assert "Run the same command again to resume" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "pipeline:daily", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "pipeline:daily", "--param", "date"], "--param 'date': expected KEY=VALUE"),
        (["run", "pipeline:daily", "--param", "=x"], "expected KEY=VALUE"),
        (["run", "pipeline:daily", "--workers", "two"], "invalid int value: 'two'"),
        (["frobnicate", "pipeline:daily"], "invalid choice: 'frobnicate'"),
        ([], "flowkit: error: a command is required"),
    ],
    ids=["unknown-option", "param-no-equals", "param-no-key", "bad-int", "bad-command", "none"],
)
def test_invalid_command_line_exits_2_with_message(
    tmp_path: Path, pipeline: Path, args: list[str], message: str
) -> None:
    r = flowkit(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert ran(tmp_path) == []
    assert not (tmp_path / ".flowkit").exists()


def test_unknown_param_key_exits_2_with_did_you_mean(tmp_path: Path, pipeline: Path) -> None:
    r = flowkit("run", "pipeline:daily", "--param", "dat=2026-11-24", cwd=tmp_path)
    assert r.returncode == 2
    assert "parameter 'dat' is not taken by any step of flow 'daily'" in r.stderr
    assert "Did you mean 'date'?" in r.stderr
    assert not (tmp_path / ".flowkit").exists()


# --- output --------------------------------------------------------------------------------------


def test_output_has_one_line_per_finished_step_and_a_summary(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, "flaky.py", FLAKY)
    code, out, _ = cli("run", str(tmp_path / "flaky.py:retrying"))
    assert code == 0
    lines = step_lines(out)
    assert set(lines) == {"flaky", "after"}
    assert lines["flaky"]["status"] == "SUCCEEDED"
    assert lines["flaky"]["attempts"] == "2"
    assert lines["after"]["attempts"] == "1"
    assert sum(1 for x in out.splitlines() if x.startswith("[SUCCEEDED]")) == 2
    assert "[RETRY]     flaky attempt 1 failed: ConnectionError: try again" in out
    summary = [m for x in out.splitlines() if (m := SUMMARY.match(x))]
    assert len(summary) == 1
    assert summary[0]["verdict"] == "PASSED"
    assert summary[0]["counts"] == "2 succeeded"


def test_cached_steps_get_a_cached_line_and_the_summary_counts_them(
    cli: Cli, pipeline: Path
) -> None:
    target = f"{pipeline}:daily"
    cli("run", target)
    code, out, _ = cli("run", target)
    assert code == 0
    cached = [x for x in out.splitlines() if x.startswith("[CACHED]")]
    assert [x.split()[1] for x in cached] == ALL_STEPS
    assert all(re.search(r"\(\d+ attempts?, \d+ms, finished earlier\)$", x) for x in cached)
    assert "Flow daily PASSED — run daily: 4 cached in " in out


def test_quiet_prints_only_failures_and_summary(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, "branches.py", BRANCHES)
    code, out, _ = cli("run", str(tmp_path / "branches.py"), "-q", "--continue-on-error")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert lines[0].startswith("[FAILED]    broken (1 attempt, ")
    assert lines[0].endswith("): ValueError: disk on fire")
    assert SUMMARY.match(lines[1])
    assert lines[2] == "  broken: ValueError: disk on fire"
    assert lines[3].startswith("Run the same command again to resume")


def test_quiet_successful_run_prints_only_the_summary(cli: Cli, pipeline: Path) -> None:
    code, out, _ = cli("run", f"{pipeline}:daily", "--quiet")
    assert code == 0
    assert len(out.splitlines()) == 1
    assert SUMMARY.match(out)


def test_json_log_format_prints_one_json_object_per_line(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, "branches.py", BRANCHES)
    code, out, _ = cli("run", str(tmp_path / "branches.py"), "--log-format", "json")
    assert code == 1
    events = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(e, dict) for e in events)
    assert events[0]["event"] == "RunStarted"
    assert events[-1]["event"] == "RunFinished"
    assert events[-1]["status"] == "failed"
    assert events[-1]["counts"] == {"failed": 1, "upstream_failed": 1, "skipped": 2}
    failed = [e for e in events if e["event"] == "StepFailed"]
    assert [(e["step"], e["attempts"], e["error"]) for e in failed] == [
        ("broken", 1, "ValueError: disk on fire")
    ]
    assert isinstance(failed[0]["duration_s"], float)
    skipped = {e["step"]: (e["status"], e["reason"]) for e in events if e["event"] == "StepSkipped"}
    assert skipped["after_broken"] == ("upstream_failed", "upstream 'broken' failed")
    assert skipped["good"] == ("skipped", "fail-fast: step 'broken' failed")


# --- parameters and run ids ----------------------------------------------------------------------


def test_different_params_make_separate_runs_and_same_param_resumes(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    first = cli("run", "pipeline.py:daily", "--param", "date=2026-11-24")
    second = cli("run", "pipeline.py:daily", "--param", "date=2026-11-25")
    assert first.returncode == second.returncode == 0
    run1 = SUMMARY.search(first.stdout.splitlines()[-1])
    run2 = SUMMARY.search(second.stdout.splitlines()[-1])
    assert run1 and run2
    assert run1["run"] != run2["run"]
    assert ran(tmp_path) == ALL_STEPS * 2
    folders = sorted(p.name for p in (tmp_path / ".flowkit" / "daily").iterdir())
    assert folders == sorted([run1["run"], run2["run"]])
    assert (tmp_path / "report-2026-11-24.txt").read_text() == "sales for 2026-11-24"

    again = cli("run", "pipeline.py:daily", "--param", "date=2026-11-24")
    assert again.returncode == 0
    assert f"resuming run {run1['run']}" in again.stdout
    assert "4 cached" in again.stdout
    assert ran(tmp_path) == []


def test_run_id_option_names_the_state_folder(cli: Cli, tmp_path: Path, pipeline: Path) -> None:
    r = cli("run", "pipeline.py:daily", "--run-id", "nightly")
    assert r.returncode == 0
    assert [p.name for p in (tmp_path / ".flowkit" / "daily").iterdir()] == ["nightly"]
    assert (tmp_path / ".flowkit" / "daily" / "nightly" / "journal.jsonl").is_file()
    again = cli("run", "pipeline.py:daily", "--run-id", "nightly")
    assert "4 cached" in again.stdout


def test_int_annotated_param_is_converted_from_the_command_line(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, "typed.py", TYPED)
    r = cli("run", "typed.py", "--param", "n=3")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "received.txt").read_text() == "int:3"


def test_param_that_does_not_convert_exits_2_naming_step_and_param(tmp_path: Path) -> None:
    write(tmp_path, "typed.py", TYPED)
    r = flowkit("run", "typed", "--param", "n=abc", cwd=tmp_path)
    assert r.returncode == 2
    assert "step 'double'" in r.stderr
    assert "n: int" in r.stderr
    assert "'abc' is not a valid int" in r.stderr
    assert not (tmp_path / "received.txt").exists()
    assert not (tmp_path / ".flowkit").exists()


# --- dry run -------------------------------------------------------------------------------------


def test_first_dry_run_prints_tiers_and_executes_and_writes_nothing(
    tmp_path: Path, pipeline: Path
) -> None:
    r = flowkit("run", "pipeline:daily", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [x for x in r.stdout.splitlines() if x.startswith("tier")] == [
        "tier 0:",
        "tier 1:",
        "tier 2:",
        "tier 3:",
    ]
    assert plan_lines(r.stdout) == {name: "run  (new)" for name in ALL_STEPS}
    assert "4 step(s) would run, 0 would not." in r.stdout
    assert ran(tmp_path) == []
    assert not (tmp_path / "report-2026-11-25.txt").exists()
    assert not (tmp_path / ".flowkit").exists()


def test_later_dry_run_reports_code_change_and_leaves_state_and_files_untouched(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    assert cli("run", "pipeline.py:daily").returncode == 0
    ran(tmp_path)
    edit(pipeline, "return normalise(fetch)", "return normalise(fetch) + '!'")
    before = tree_bytes(tmp_path / ".flowkit")
    report = tmp_path / "report-2026-11-25.txt"
    report_mtime = report.stat().st_mtime_ns

    r = cli("run", "pipeline.py:daily", "--dry-run")
    assert r.returncode == 0, r.stderr
    plan = plan_lines(r.stdout)
    assert plan["fetch"] == "cached"
    assert plan["transform"] == "run  (code changed)"
    assert plan["report"].startswith("run ")
    assert plan["archive"].startswith("run ")
    assert "3 step(s) would run, 1 would not." in r.stdout
    assert tree_bytes(tmp_path / ".flowkit") == before
    assert report.stat().st_mtime_ns == report_mtime
    assert ran(tmp_path) == []


def test_dry_run_reports_input_changed_when_stored_upstream_output_differs(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    cli("run", "pipeline.py:daily")
    edit(pipeline, 'return f"  Sales for {date}  "', 'return f"  Orders for {date}  "')
    assert cli("run", "pipeline.py:daily", "--only", "fetch").returncode == 0
    ran(tmp_path)
    r = cli("run", "pipeline.py:daily", "--dry-run")
    plan = plan_lines(r.stdout)
    assert plan["fetch"] == "cached"
    assert plan["transform"] == "run  (input changed: fetch)"


def test_dry_run_says_upstream_reruns_for_dependents_of_a_step_that_will_run(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    """fetch's code changes but it returns an equal value: its dependents are *not* known to get
    a changed input, so the plan must say they run because fetch re-runs, not "input changed"
    (the real run below keeps them cached)."""
    cli("run", "pipeline.py:daily")
    edit(pipeline, 'return f"  Sales for {date}  "', 'return "  Sales for " + date + "  "')
    r = cli("run", "pipeline.py:daily", "--dry-run")
    plan = plan_lines(r.stdout)
    assert plan["fetch"] == "run  (code changed)"
    real = cli("run", "pipeline.py:daily")
    assert "[CACHED]    transform" in real.stdout
    assert plan["transform"] == "run  (upstream re-runs: fetch)"
    assert plan["report"] == "run  (upstream re-runs: transform)"


# --- code changes --------------------------------------------------------------------------------


def test_editing_a_step_body_reruns_it_and_its_downstream(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    cli("run", "pipeline.py:daily")
    ran(tmp_path)
    edit(pipeline, "return transform.upper()", "return transform.title()")
    r = cli("run", "pipeline.py:daily")
    assert r.returncode == 0
    assert ran(tmp_path) == ["report", "archive"]
    assert "[CACHED]    fetch" in r.stdout
    assert "[CACHED]    transform" in r.stdout


def test_code_change_is_detected_by_a_separate_process(tmp_path: Path, pipeline: Path) -> None:
    assert flowkit("run", "pipeline:daily", cwd=tmp_path).returncode == 0
    ran(tmp_path)
    edit(pipeline, "return transform.upper()", "return transform.upper() + '.'")
    r = flowkit("run", "pipeline:daily", cwd=tmp_path)
    assert r.returncode == 0
    assert ran(tmp_path) == ["report", "archive"]
    assert "2 succeeded, 2 cached" in r.stdout


def test_run_output_says_a_step_reran_because_its_code_changed(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    cli("run", "pipeline.py:daily")
    edit(pipeline, "return transform.upper()", "return transform.title()")
    r = cli("run", "pipeline.py:daily")
    report_line = next(x for x in r.stdout.splitlines() if x.startswith("[SUCCEEDED] report"))
    assert "code changed" in report_line, r.stdout


def test_verbose_run_says_why_each_step_starts(cli: Cli, tmp_path: Path, pipeline: Path) -> None:
    cli("run", "pipeline.py:daily")
    edit(pipeline, "return transform.upper()", "return transform.title()")
    r = cli("run", "pipeline.py:daily", "-v")
    assert "[STARTED]   report (attempt 1; code changed)" in r.stdout
    assert "[STARTED]   archive (attempt 1; input changed: report)" in r.stdout


def test_editing_comments_docstrings_or_formatting_keeps_everything_cached(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    cli("run", "pipeline.py:daily")
    ran(tmp_path)
    edit(pipeline, "  # FETCH-BODY", "  # fetched from the warehouse, see ticket 12")
    edit(pipeline, '"""Fetch the day\'s sales."""', '"""Fetch sales.\n\n    Longer text."""')
    edit(
        pipeline,
        "def normalise(text: str) -> str:\n    return text.strip().lower()",
        "def normalise(\n    text: str,\n) -> str:\n    # tidy\n    return (text.strip()\n"
        "            .lower())\n",
    )
    edit(pipeline, '    ran("report")\n', "    ran('report')   # quotes changed\n\n")
    r = cli("run", "pipeline.py:daily")
    assert r.returncode == 0, r.stderr
    assert ran(tmp_path) == []
    assert "4 cached" in r.stdout


def test_editing_a_same_file_helper_reruns_the_step_that_calls_it(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    cli("run", "pipeline.py:daily")
    ran(tmp_path)
    edit(pipeline, "return text.strip().lower()", "return text.strip().lower().replace(' ', '_')")
    r = cli("run", "pipeline.py:daily")
    assert r.returncode == 0
    assert ran(tmp_path) == ["transform", "report", "archive"]
    assert (tmp_path / "report-2026-11-25.txt").read_text() == "sales_for_2026-11-25"


@pytest.mark.parametrize(
    ("old", "new", "reruns", "published"),
    [
        ("n * 10", "n * 100", ["price", "publish"], "widgets=700"),  # helpers.scale(...)
        ("text.strip().lower()", "text.strip()", ["load", "price", "publish"], "Widgets=70"),
    ],
    ids=["module-attribute", "from-import"],
)
def test_editing_a_sibling_module_helper_reruns_the_step_that_calls_it(
    cli: Cli, tmp_path: Path, old: str, new: str, reruns: list[str], published: str
) -> None:
    write(tmp_path, "proj/pipeline.py", PROJ_PIPELINE)
    helpers = write(tmp_path, "proj/shop_helpers.py", PROJ_HELPERS)
    assert cli("run", "proj/pipeline.py:shop").returncode == 0
    ran(tmp_path)
    edit(helpers, old, new)
    r = cli("run", "proj/pipeline.py:shop")
    assert r.returncode == 0, r.stderr
    assert ran(tmp_path) == reruns
    assert (tmp_path / "published.txt").read_text() == published


def test_upstream_code_change_with_equal_output_keeps_data_dependents_cached(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    cli("run", "pipeline.py:daily")
    ran(tmp_path)
    edit(pipeline, 'return f"  Sales for {date}  "', 'return "  Sales for " + date + "  "')
    r = cli("run", "pipeline.py:daily")
    assert r.returncode == 0
    assert ran(tmp_path) == ["fetch"]
    assert "1 succeeded, 3 cached" in r.stdout


# --- selecting steps -----------------------------------------------------------------------------


def test_rerun_reruns_the_step_and_its_downstream_only(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    cli("run", "pipeline.py:daily")
    ran(tmp_path)
    r = cli("run", "pipeline.py:daily", "--rerun", "report")
    assert r.returncode == 0
    assert ran(tmp_path) == ["report", "archive"]
    assert "2 succeeded, 2 cached" in r.stdout


def test_rerun_accepts_glob_patterns(cli: Cli, tmp_path: Path, pipeline: Path) -> None:
    cli("run", "pipeline.py:daily")
    ran(tmp_path)
    r = cli("run", "pipeline.py:daily", "--rerun", "tr*")
    assert r.returncode == 0
    assert ran(tmp_path) == ["transform", "report", "archive"]


def test_rerun_unknown_step_exits_2_with_close_name(tmp_path: Path, pipeline: Path) -> None:
    r = flowkit("run", "pipeline:daily", "--rerun", "transfrom", cwd=tmp_path)
    assert r.returncode == 2
    assert "no step named 'transfrom'" in r.stderr
    assert "Did you mean 'transform'?" in r.stderr
    assert ran(tmp_path) == []


def test_only_runs_just_that_step_when_its_upstreams_are_stored(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    first = cli("run", "pipeline.py:daily", "--only", "fetch")
    assert first.returncode == 0, first.stderr
    assert ran(tmp_path) == ["fetch"]
    r = cli("run", "pipeline.py:daily", "--only", "transform")
    assert r.returncode == 0, r.stderr
    assert ran(tmp_path) == ["transform"]
    assert "[CACHED]    fetch" in r.stdout
    assert not (tmp_path / "report-2026-11-25.txt").exists()


def test_only_with_a_missing_upstream_exits_2_naming_it(tmp_path: Path, pipeline: Path) -> None:
    r = flowkit("run", "pipeline:daily", "--only", "report", cwd=tmp_path)
    assert r.returncode == 2
    assert "upstream step 'fetch' has no usable stored result" in r.stderr
    assert ran(tmp_path) == []


# --- failure modes -------------------------------------------------------------------------------


def test_fail_fast_skips_the_other_branch_naming_the_failed_step(tmp_path: Path) -> None:
    write(tmp_path, "branches.py", BRANCHES)
    r = flowkit("run", "branches:branches", "--workers", "1", cwd=tmp_path)
    assert r.returncode == 1
    assert ran(tmp_path) == ["broken"]
    out = r.stdout.splitlines()
    assert "[SKIPPED]   good: fail-fast: step 'broken' failed" in out
    assert "[UPSTREAM_FAILED] after_broken: upstream 'broken' failed" in out
    assert any(x.startswith("[SKIPPED]   good_report: ") for x in out)
    assert "1 failed, 1 upstream_failed, 2 skipped" in r.stdout


def test_fail_fast_names_the_failed_step_for_every_step_it_stopped(tmp_path: Path) -> None:
    write(tmp_path, "branches.py", BRANCHES)
    r = flowkit("run", "branches:branches", "--workers", "1", cwd=tmp_path)
    line = next(x for x in r.stdout.splitlines() if x.startswith("[SKIPPED]   good_report: "))
    assert "'broken'" in line, line


def test_continue_on_error_runs_independent_branch_and_skips_only_dependents(
    tmp_path: Path,
) -> None:
    write(tmp_path, "branches.py", BRANCHES)
    r = flowkit("run", "branches:branches", "--continue-on-error", "--workers", "1", cwd=tmp_path)
    assert r.returncode == 1
    assert ran(tmp_path) == ["broken", "good", "good_report"]
    not_run = [x for x in r.stdout.splitlines() if x.startswith(("[SKIPPED]", "[UPSTREAM"))]
    assert not_run == ["[UPSTREAM_FAILED] after_broken: upstream 'broken' failed"]
    assert step_lines(r.stdout)["good_report"]["status"] == "SUCCEEDED"
    assert "2 succeeded, 1 failed, 1 upstream_failed" in r.stdout


# --- status, runs, clean, explain, graph -------------------------------------------------------


def test_status_shows_state_attempts_duration_and_error_of_each_step(
    cli: Cli, tmp_path: Path
) -> None:
    write(tmp_path, "branches.py", BRANCHES)
    target = str(tmp_path / "branches.py")
    assert cli("run", target)[0] == 1
    code, out, _ = cli("status", target)
    assert code == 0
    assert "Flow branches, run branches: failed" in out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert re.match(r"broken\s+failed\s+1\s+\d+ms  ValueError: disk on fire$", rows["broken"])
    assert re.match(r"good\s+skipped\s+fail-fast: step 'broken' failed$", rows["good"])
    assert re.match(
        r"after_broken\s+upstream_failed\s+upstream 'broken' failed$", rows["after_broken"]
    )

    cli("run", target, "--continue-on-error")
    cli("run", target, "--continue-on-error")
    _, out, _ = cli("status", target)
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert re.match(r"good\s+cached\s+1\s+\d+ms$", rows["good"])
    assert re.match(r"broken\s+failed\s+1\s+\d+ms  ValueError", rows["broken"])


def test_status_shows_pending_for_steps_never_reached(cli: Cli, pipeline: Path) -> None:
    target = f"{pipeline}:daily"
    assert cli("run", target, "--only", "fetch")[0] == 0
    code, out, _ = cli("status", target)
    assert code == 0
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:]}
    assert rows["fetch"] == "succeeded"
    assert rows["transform"] == "pending"


def test_status_with_params_reads_that_run_and_without_state_exits_2(
    cli: Cli, pipeline: Path
) -> None:
    target = f"{pipeline}:daily"
    cli("run", target, "-p", "date=2026-11-24")
    code, out, _ = cli("status", target, "-p", "date=2026-11-24")
    assert code == 0
    assert re.search(r"^Flow daily, run daily-\w+: succeeded$", out, re.M)
    code, out, err = cli("status", target, "-p", "date=2026-11-26")
    assert code == 2 and out == ""
    assert re.search(r"run daily-\w+ of flow daily has no state \(looked in .*\); run it", err)


def test_runs_lists_each_run_with_status_and_params(cli: Cli, pipeline: Path) -> None:
    target = f"{pipeline}:daily"
    cli("run", target, "-p", "date=2026-11-24")
    cli("run", target, "--run-id", "nightly")
    code, out, _ = cli("runs", target)
    assert code == 0
    rows = out.splitlines()[1:-1]
    assert len(rows) == 2
    assert out.splitlines()[-1].startswith("2 run(s), ")
    by_id = {r.split()[0]: r for r in rows}
    assert "nightly" in by_id
    other = next(k for k in by_id if k != "nightly")
    assert other.startswith("daily-")
    assert "succeeded" in by_id[other]
    assert "4 succeeded" in by_id[other]
    assert "'date': '2026-11-24'" in by_id[other]


def test_clean_deletes_the_chosen_run_only(cli: Cli, pipeline: Path, tmp_path: Path) -> None:
    target = f"{pipeline}:daily"
    root = tmp_path / ".flowkit" / "daily"
    cli("run", target, "--run-id", "keep")
    cli("run", target, "--run-id", "drop")
    code, out, _ = cli("clean", target, "--run-id", "drop", "--dry-run")
    assert code == 0
    assert "would delete" in out and "drop" in out
    assert sorted(p.name for p in root.iterdir()) == ["drop", "keep"]
    code, out, _ = cli("clean", target, "--run-id", "drop")
    assert code == 0
    assert "deleted" in out
    assert sorted(p.name for p in root.iterdir()) == ["keep"]


def test_clean_all_deletes_every_run_and_dry_run_none(
    cli: Cli, pipeline: Path, tmp_path: Path
) -> None:
    target = f"{pipeline}:daily"
    root = tmp_path / ".flowkit" / "daily"
    cli("run", target, "-p", "date=2026-11-24")
    cli("run", target, "-p", "date=2026-11-25")
    code, out, _ = cli("clean", target, "--all", "--dry-run")
    assert code == 0
    assert len([x for x in out.splitlines() if x.startswith("would delete")]) == 2
    assert len(list(root.iterdir())) == 2
    code, out, _ = cli("clean", target, "--all")
    assert len([x for x in out.splitlines() if x.startswith("deleted")]) == 2
    assert list(root.iterdir()) == []


def test_clean_with_params_deletes_that_params_run(
    cli: Cli, pipeline: Path, tmp_path: Path
) -> None:
    target = f"{pipeline}:daily"
    cli("run", target, "-p", "date=2026-11-24")
    cli("run", target, "-p", "date=2026-11-25")
    code, _, _ = cli("clean", target, "-p", "date=2026-11-24")
    assert code == 0
    left = [p.name for p in (tmp_path / ".flowkit" / "daily").iterdir()]
    _, runs_out, _ = cli("runs", target)
    assert len(left) == 1
    assert "2026-11-25" in runs_out and "2026-11-24" not in runs_out


def test_explain_says_cached_or_why_a_step_would_run(
    cli: Cli, tmp_path: Path, pipeline: Path
) -> None:
    before = cli("explain", "pipeline.py:daily", "report")
    assert before.returncode == 0
    assert before.stdout.strip() == "report: would run — new."
    cli("run", "pipeline.py:daily")
    cached = cli("explain", "pipeline.py:daily", "report")
    assert cached.stdout.startswith("report: cached")
    edit(pipeline, "return transform.upper()", "return transform.title()")
    changed = cli("explain", "pipeline.py:daily", "report")
    assert changed.stdout.strip() == "report: would run — code changed."
    assert ran(tmp_path) == ALL_STEPS  # only the one real run executed anything


def test_explain_unknown_step_exits_2_with_close_name(cli: Cli, pipeline: Path) -> None:
    code, _, err = cli("explain", f"{pipeline}:daily", "reprot")
    assert code == 2
    assert "no step named 'reprot'" in err
    assert "Did you mean 'report'?" in err


def test_graph_text_lists_tiers_with_upstreams(cli: Cli, pipeline: Path) -> None:
    code, out, _ = cli("graph", f"{pipeline}:daily", "--format", "text")
    assert code == 0
    assert out.splitlines() == [
        "tier 0:",
        "  fetch",
        "tier 1:",
        "  transform  ← fetch",
        "tier 2:",
        "  report  ← transform",
        "tier 3:",
        "  archive  ← report",
    ]


def test_graph_mermaid_has_nodes_data_and_order_edges(cli: Cli, pipeline: Path) -> None:
    code, out, _ = cli("graph", f"{pipeline}:daily", "--format", "mermaid")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "graph TD"
    ids = {m[2]: m[1] for x in lines if (m := re.match(r'^  (\w+)\["(\w+)"\]$', x))}
    assert set(ids) == set(ALL_STEPS)
    assert f"  {ids['fetch']} --> {ids['transform']}" in lines
    assert f"  {ids['transform']} --> {ids['report']}" in lines
    assert f"  {ids['report']} -.-> {ids['archive']}" in lines  # order-only


def test_graph_dot_is_a_digraph_with_labelled_nodes_and_edges(cli: Cli, pipeline: Path) -> None:
    code, out, _ = cli("graph", f"{pipeline}:daily", "--format", "dot")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "digraph flow {" and lines[-1] == "}"
    ids = {m[2]: m[1] for x in lines if (m := re.match(r'^  (\w+) \[label="(\w+)"', x))}
    assert set(ids) == set(ALL_STEPS)
    assert f"  {ids['fetch']} -> {ids['transform']};" in lines
    assert f"  {ids['report']} -> {ids['archive']} [style=dashed];" in lines


def test_graph_bad_format_exits_2(tmp_path: Path, pipeline: Path) -> None:
    r = flowkit("graph", "pipeline:daily", "--format", "png", cwd=tmp_path)
    assert r.returncode == 2
    assert "invalid choice: 'png'" in r.stderr


def test_version_flag_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    import flowkit

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flowkit {flowkit.__version__}"
