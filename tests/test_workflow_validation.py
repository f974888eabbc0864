"""Bad workflow files: every problem at once with file:line and a did-you-mean, exit 2, bounded
YAML, a JSON Schema that matches the loader, and a 1,000-task workflow loaded fast."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from conftest import run_flowkit

import flowkit
from flowkit.wf_schema import TASK_KEYS, TOP_KEYS, canonical, schema_text
from flowkit.workflow import WorkflowError, load_workflow


def _write(tmp_path: Path, text: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


_flowkit = run_flowkit


def test_every_problem_is_reported_at_once_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("print(1)\n")
    wf = _write(
        tmp_path,
        """\
        name: seeds
        tasks:
          fetch:
            scrpit: ./a.py
          transform:
            script: ./a.py
            depends_onn: [fetch]
            when: "{{ fetch.failed }}"
            env_vars: {A: b}
          load:
            script: ./missing.py
            depends_on: [fetchh]
            environment: {X: "{{ matrix.nope }} {{ params.day }} {{ fetch.colour }}"}
            condition: "{{ fetch.__class__ }}"
            retries: -1
          notify:
            command: echo
            skip_if: "{{ __import__('os') }}"
        """,
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow(wf)
    text = str(info.value)
    expected = [
        (4, "unknown key 'scrpit'. Did you mean 'script'?"),
        (7, "unknown key 'depends_onn'. Did you mean 'depends_on'?"),
        (8, "unknown key 'when'. Did you mean 'condition'?"),
        (9, "unknown key 'env_vars'. Did you mean 'environment'?"),
        (11, "script './missing.py' not found"),
        (12, "depends on 'fetchh', which is not a task. Did you mean 'fetch'?"),
        (13, "matrix.nope is not a matrix key"),
        (13, "params.day is not a param"),
        (13, "fetch.colour is not known"),
        (14, "'.__class__' is not allowed (names starting with _)"),
        (15, "retries=-1 is invalid"),
        (18, "calls are not allowed"),
    ]
    for line, message in expected:
        assert any(f"{wf}:{line}: " in row and message in row for row in text.splitlines()), (
            line,
            message,
            text,
        )
    assert text.startswith(f"{len(info.value.problems)} problems in {wf}")


def test_an_invalid_workflow_exits_2_from_the_cli_without_a_traceback(tmp_path: Path) -> None:
    _write(tmp_path, "tasks:\n  a: {command: echo, depends_onn: [b]}\n")
    run = _flowkit(tmp_path, "run", "wf.yaml")
    assert run.returncode == 2
    assert "wf.yaml:2: task 'a': unknown key 'depends_onn'" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_alias_bomb_is_refused_fast_naming_the_anchors(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]")
    lines.append("tasks: {t: {command: echo, args: *j}}")
    (tmp_path / "wf.yaml").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    run = _flowkit(tmp_path, "run", "wf.yaml")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "aliases expand to more than" in run.stderr and "&a (used" in run.stderr
    with pytest.raises(WorkflowError, match="alias bomb"):
        t1 = time.perf_counter()
        load_workflow(tmp_path / "wf.yaml")
    assert time.perf_counter() - t1 < 0.5, "refused in well under a second"
    assert time.perf_counter() - t0 < 30


def test_a_ten_thousand_deep_document_is_refused_fast(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("tasks: " + "[" * 10_000 + "]" * 10_000 + "\n")
    t0 = time.perf_counter()
    with pytest.raises(WorkflowError, match="nest"):
        load_workflow(tmp_path / "wf.yaml")
    assert time.perf_counter() - t0 < 0.5
    nested = "tasks:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)) + "\n"
    (tmp_path / "deep.yaml").write_text(nested)
    run = _flowkit(tmp_path, "run", "deep.yaml")
    assert run.returncode == 2 and "nested more than 64 levels" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_thousand_task_workflow_validates_and_plans_in_about_a_second(tmp_path: Path) -> None:
    (tmp_path / "step.py").write_text("print('ok')\n")
    rows = ["params: {day: '2026-11-25'}", "tasks:"]
    for i in range(1000):
        deps = f"[t{i - 1}, t{i // 2}]" if i else "[]"
        rows += [
            f"  t{i}:",
            "    script: step.py",
            f"    depends_on: {deps}",
            "    retries: 1",
            "    environment: {DAY: '{{ params.day }}', N: '" + str(i) + "'}",
        ]
    wf = tmp_path / "wf.yaml"
    wf.write_text("\n".join(rows) + "\n")
    t0 = time.perf_counter()
    flow = load_workflow(wf)
    plan = flow.plan(state_dir=tmp_path / "state")
    took = time.perf_counter() - t0
    assert len(plan.would_run()) == 1000
    assert took < 5.0, f"1,000 tasks took {took:.2f}s"  # about 0.3 s here; generous for CI


def test_the_shipped_json_schema_is_current_and_matches_the_loader() -> None:
    shipped = Path(flowkit.__file__).parent / "workflow.schema.json"
    assert shipped.read_text() == schema_text(), "regenerate: python -m flowkit.wf_schema"
    schema = json.loads(shipped.read_text())
    task_props = schema["$defs"]["task"]["anyOf"][2]["properties"]
    assert set(task_props) == set(canonical(TASK_KEYS))
    assert set(schema["$defs"]["body"]["properties"]) == set(canonical(TOP_KEYS))
    # every accepted spelling loads; anything else is refused
    for key in canonical(TASK_KEYS):
        assert key in task_props


def test_the_yaml_extra_still_exists_and_pyyaml_is_a_core_dependency() -> None:
    from importlib.metadata import requires

    reqs = requires("flowkit") or []
    core = [r for r in reqs if "extra ==" not in r]
    assert any(r.lower().startswith("pyyaml") for r in core)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks:\n  a: {command: echo, run_always: true, trigger: all_success}\n", "run_always"),
        ("tasks:\n  a: {command: echo, matrix: {b: []}}\n", "matrix.b must be a non-empty list"),
        ("tasks:\n  a: {command: echo, timeout_seconds: 1, timeout_minutes: 1}\n", "both given"),
        ("tasks:\n  a: {script: x.py, command: echo}\n", "give one of script, command"),
        ("tasks:\n  a: {fn: 'nosuchmodule:f'}\n", "cannot import 'nosuchmodule'"),
        ("tasks:\n  a: {command: 'echo {{ b.output }}'}\n", "unknown name 'b'"),
        ("workflow: {tasks: {a: echo}}\nname: x\n", "inside 'workflow:'"),
        ("tasks:\n  a: echo\nnotifications:\n  on_failure: [{type: fax}]\n", "'type' must be"),
        ("tasks:\n  a: echo\n  a: echo\n", "appears twice"),
        ("defaults: {env: [1]}\ntasks: {a: {command: echo, env: {A: b}}}\n", "must map names"),
        ("tasks:\n  a: !!python/object/apply:os.system [echo hi]\n", "safe loading only"),
        ("tasks:\n  a: {command: !!python/name:os.system x}\n", "safe loading only"),
        ("tasks: {a: {command: echo, retry_backoff: linear}}\n", "fixed or exponential"),
        (
            "tasks:\n  a: {command: 'echo {{ b.output }}', nope: 1}\n  b: {command: echo, "
            "depends_on: [a]}\n",
            r"(?s)unknown key 'nope'.*cycle in flow 'wf': a → b → a",
        ),
    ],
)
def test_bad_values_are_named(tmp_path: Path, text: str, message: str) -> None:
    wf = _write(tmp_path, text)
    with pytest.raises(WorkflowError, match=message):
        load_workflow(wf)
