"""Workflows of scripts in YAML or JSON: they run, resume, and bad files get precise errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import run_flowkit

from flowkit import Status
from flowkit.workflow import WorkflowError, load_workflow


def _write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


_flowkit = run_flowkit


def test_yaml_workflow_runs_in_order_with_params_and_resumes(tmp_path: Path) -> None:
    wf = _write(
        tmp_path,
        """
        name: nightly
        params: {day: "2026-11-25"}
        steps:
          first: echo "first $FLOWKIT_PARAM_DAY" >> log.txt
          second:
            run: ["sh", "-c", "test -f ok || exit 3; echo second >> log.txt"]
            depends_on: [first]
    """,
    )
    failed = _flowkit(tmp_path, "run", "wf.yaml", "--param", "day=2026-11-24")
    assert failed.returncode == 1
    assert "exited with status 3" in failed.stdout
    (tmp_path / "ok").touch()
    resumed = _flowkit(tmp_path, "run", str(wf), "--param", "day=2026-11-24")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "[CACHED]    first" in resumed.stdout and "[SUCCEEDED] second" in resumed.stdout
    assert (tmp_path / "log.txt").read_text().splitlines() == ["first 2026-11-24", "second"]


def test_commands_run_in_the_workflow_folder_and_cwd_is_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    wf = _write(
        tmp_path,
        """
        steps:
          here: pwd
          there: {run: pwd, cwd: sub}
    """,
    )
    result = load_workflow(wf).run(state_dir=tmp_path / "state")
    assert result["here"].output.strip() == str(tmp_path.resolve())
    assert result["there"].output.strip() == str((tmp_path / "sub").resolve())


def test_json_workflow_with_defaults_retries_a_failing_command(tmp_path: Path) -> None:
    wf = _write(
        tmp_path,
        """
        {"name": "j", "defaults": {"retries": 2},
         "steps": {"flaky": "echo x >> n; test $(wc -l < n) -ge 2"}}
    """,
        name="wf.json",
    )
    result = load_workflow(wf).run(state_dir=tmp_path / "state")
    assert result["flaky"].status is Status.SUCCEEDED and result["flaky"].attempts == 2


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "steps:\n  a: echo\n  b:\n    run: echo\n    dependson: [a]\n",
            5,  # the line of the offending key
            "step 'b': unknown key 'dependson'. Did you mean 'depends_on'?",
        ),
        ("steps:\n  a:\n    depends_on: []\n", 2, "step 'a' has no 'run' command"),
        ("stepz:\n  a: echo\n", 1, "unknown key 'stepz'. Did you mean 'steps'?"),
        ("steps:\n  a: echo\n  b: [unclosed\n", 4, "not valid YAML"),
        ("steps:\n  a:\n    run: echo\n    retries: -1\n", 4, "retries=-1 is invalid"),
        ("steps:\n  a: {run: echo, trigger: sometimes}\n", 2, "trigger='sometimes' is invalid"),
    ],
)
def test_bad_workflow_files_name_the_file_line_and_step(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    wf = _write(tmp_path, text)
    with pytest.raises(WorkflowError) as info:
        load_workflow(wf)
    assert f"{wf}:{line}:" in str(info.value)
    assert message in str(info.value)


def test_cycles_and_unknown_dependencies_in_a_workflow_exit_2(tmp_path: Path) -> None:
    _write(
        tmp_path,
        """
        steps:
          a: {run: echo a, depends_on: [b]}
          b: {run: echo b, depends_on: [a]}
    """,
    )
    cycle = _flowkit(tmp_path, "run", "wf.yaml")
    assert cycle.returncode == 2 and "cycle in flow 'wf'" in cycle.stderr
    _write(tmp_path, "steps:\n  a: {run: echo, depends_on: [c]}\n", name="two.yaml")
    unknown = _flowkit(tmp_path, "run", "two.yaml")
    assert unknown.returncode == 2 and "depends on 'c'" in unknown.stderr
    missing = _flowkit(tmp_path, "run", "nope.yaml")
    assert missing.returncode == 2 and "no such workflow file" in missing.stderr
