"""The script-runner dialect: every key has its effect, templates and conditions see upstream
outcomes, and a changed script re-runs exactly its task and what depends on it."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import run_flowkit, run_flowkit_each

from flowkit import Status
from flowkit.workflow import load_workflow


def _write(folder: Path, rel: str, text: str, mode: int | None = None) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    if mode is not None:
        path.chmod(mode)
    return path


_flowkit = run_flowkit


def test_scripts_commands_args_environment_and_outputs(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "etl/extract.py",
        """
        import json, os, sys
        out = {"rows": 3, "args": sys.argv[1:], "level": os.environ["LOG_LEVEL"],
               "day": os.environ["FLOWKIT_PARAM_DAY"], "cwd": os.getcwd()}
        json.dump(out, open(os.environ["FLOWKIT_OUTPUT"], "w"))
        """,
    )
    _write(tmp_path, "bin/count.sh", '#!/bin/sh\necho "count $1 $ROWS"\n', mode=0o755)
    (tmp_path / "work").mkdir()
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        workflow:
          name: shapes
          version: 1.0.0
          params: {day: "2026-11-25"}
          tasks:
            extract:
              script: ./etl/extract.py
              args: ["--day", "{{ params.day }}"]
              environment: {LOG_LEVEL: INFO}
              working_dir: work
            count:
              script: bin/count.sh
              args: ["{{ extract.output.rows }}"]
              environment: {ROWS: "{{ extract.output.rows }}"}
            shell:
              run: echo "$GREETING from $(basename $PWD)" {{ extract.output.level }}
              env: {GREETING: hello}
              depends_on: extract
            argv:
              command: ["printf", "%s|%s", "{{ params.day }}", "a b"]
        """,
    )
    flow = load_workflow(wf)
    assert flow.version == "1.0.0"
    result = flow.run(state_dir=tmp_path / "state")
    assert result.ok, result.summary()
    out = result["extract"].output
    assert out["args"] == ["--day", "2026-11-25"] and out["level"] == "INFO"
    assert out["day"] == "2026-11-25" and out["cwd"] == str((tmp_path / "work").resolve())
    assert result["count"].output.strip() == "count 3 3"
    assert result["shell"].output.strip() == f"hello from {tmp_path.name} INFO"
    assert result["argv"].output == "2026-11-25|a b"
    assert flow.graph().nodes["count"].data_deps == ("extract",)  # read by a template


def test_retries_with_exponential_backoff_and_delay(tmp_path: Path) -> None:
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          flaky:
            command: echo x >> n; test $(wc -l < n) -ge 3
            retries: 2
            retry_backoff: exponential
            retry_delay_ms: 50
          steady:
            command: "false"
            retries: 1
            retry_delay_ms: 20
        """,
    )
    result = load_workflow(wf).run(state_dir=tmp_path / "state", fail_fast=False)
    assert result["flaky"].status is Status.SUCCEEDED and result["flaky"].attempts == 3
    assert result["flaky"].retry_delays == [0.05, 0.1]
    assert result["steady"].status is Status.FAILED and result["steady"].retry_delays == [0.02]
    assert result["steady"].error is not None and result["steady"].error.exit_code == 1


def test_timeouts_in_fractional_seconds_and_minutes_kill_the_command(tmp_path: Path) -> None:
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          slow: {command: "sleep 30", timeout_seconds: 0.3}
          slower: {command: "sleep 30", timeout_minutes: 0.005}
        """,
    )
    result = load_workflow(wf).run(state_dir=tmp_path / "state", fail_fast=False)
    assert result["slow"].status is Status.TIMED_OUT and result["slow"].duration_s < 5
    assert result["slower"].status is Status.TIMED_OUT and result["slower"].duration_s < 5


def test_conditions_and_run_always_see_the_upstream_outcome(tmp_path: Path) -> None:
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        params: {mode: full}
        tasks:
          transform: {command: "exit ${CODE:-0}"}
          send_alert:
            command: echo "alert {{ transform.exit_code }} {{ transform.status }}"
            depends_on: [transform]
            condition: "{{ transform.exit_code != 0 }}"
          cleanup:
            command: echo cleaned
            depends_on: [transform]
            skip_if: "{{ transform.failed }}"
          report:
            command: echo "report {{ transform.succeeded }}"
            depends_on: [transform]
            run_always: true
          full_only:
            command: echo full
            condition: params.mode == 'full' and not transform.skipped
          never: {command: echo never, condition: false}
        """,
    )
    flow = load_workflow(wf)
    os.environ["CODE"] = "4"
    try:
        failed = flow.run(state_dir=tmp_path / "state")
    finally:
        del os.environ["CODE"]
    assert failed["transform"].status is Status.FAILED
    assert failed["send_alert"].output.strip() == "alert 4 failed"
    assert failed["cleanup"].status is Status.SKIPPED
    assert failed["report"].output.strip() == "report false"
    assert failed["never"].status is Status.SKIPPED
    resumed = flow.run(state_dir=tmp_path / "state")
    assert resumed.ok, resumed.summary()
    assert resumed["transform"].status is Status.SUCCEEDED
    assert resumed["cleanup"].output.strip() == "cleaned"
    assert resumed["report"].output.strip() == "report true"  # re-ran: its upstream changed
    # it reads transform's outcome, which changed: decided again, not reused
    assert resumed["full_only"].reason == "input changed: transform"
    assert flow.run(state_dir=tmp_path / "state")["full_only"].status is Status.CACHED


def test_matrix_instances_run_at_most_parallelism_at_once(tmp_path: Path) -> None:
    script = """
        import os, time, json
        b = os.environ["BATCH"]
        open(f"log/{b}.start", "w").write(repr(time.time()))
        time.sleep(0.3)
        open(f"log/{b}.end", "w").write(repr(time.time()))
        json.dump(int(b) * 10, open(os.environ["FLOWKIT_OUTPUT"], "w"))
    """
    _write(tmp_path, "batch.py", script)
    (tmp_path / "log").mkdir()
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          batches:
            script: batch.py
            matrix: {batch: [0, 1, 2, 3, 4, 5]}
            parallelism: 2
            environment: {BATCH: "{{ matrix.batch }}"}
          total:
            command: echo "{{ batches.output }}"
        """,
    )
    flow = load_workflow(wf)
    assert flow.default_workers == 2
    result = flow.run(state_dir=tmp_path / "state")
    assert result.ok, result.summary()
    assert result["total"].output.strip() == "[0,10,20,30,40,50]"
    spans = [
        (
            float((tmp_path / f"log/{b}.start").read_text()),
            float((tmp_path / f"log/{b}.end").read_text()),
        )
        for b in range(6)
    ]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2


def test_fn_tasks_call_python_functions_from_the_workflow_folder(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "helpers.py",
        """
        def rows(day: str) -> list[int]:
            return [1, 2, len(day)]

        def total(rows: list[int], factor: int = 2) -> int:
            return sum(rows) * factor
        """,
    )
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        params: {day: "2026"}
        tasks:
          rows: {fn: "helpers:rows"}
          total: {fn: "helpers:total", depends_on: [rows]}
          shown: {command: "echo {{ total.output }}"}
        """,
    )
    result = load_workflow(wf).run(state_dir=tmp_path / "state")
    assert result["rows"].output == [1, 2, 4] and result["total"].output == 14
    assert result["shown"].output.strip() == "14"


def test_cache_false_reruns_and_unset_env_fails_naming_the_variable(tmp_path: Path) -> None:
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          always: {command: echo x >> n.txt, cache: false}
          needs_env: {command: "echo {{ env.FLOWKIT_TEST_UNSET_VAR }}"}
        """,
    )
    flow = load_workflow(wf)
    first = flow.run(state_dir=tmp_path / "state", fail_fast=False)
    flow.run(state_dir=tmp_path / "state", fail_fast=False)
    assert (tmp_path / "n.txt").read_text() == "x\nx\n"
    err = first["needs_env"].error
    assert err is not None and "FLOWKIT_TEST_UNSET_VAR is not set" in err.message


def test_editing_a_script_reruns_exactly_its_task_and_downstream(tmp_path: Path) -> None:
    for name in ("extract", "validate_merge", "other"):
        _write(tmp_path, f"etl/{name}.py", f"print('{name}')\n")
    _write(tmp_path, "conf/a.sql", "select 1")
    _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          extract: {script: etl/extract.py}
          validate: {script: etl/validate_merge.py, depends_on: [extract]}
          load: {command: echo load, depends_on: [validate], inputs: ["conf/*.sql"]}
          other: {script: etl/other.py, depends_on: [extract]}
        """,
    )
    first = _flowkit(tmp_path, "run", "wf.yaml", "--plain")
    assert first.returncode == 0, first.stdout + first.stderr
    _write(tmp_path, "etl/validate_merge.py", "print('validate v2')\n")
    plan, explain = run_flowkit_each(
        tmp_path, ["run", "wf.yaml", "--dry-run"], ["explain", "wf.yaml", "validate"]
    )
    assert "run    validate  (script changed: etl/validate_merge.py)" in plan.stdout
    assert "cached extract" in plan.stdout and "cached other" in plan.stdout
    assert "would run — script changed: etl/validate_merge.py" in explain.stdout
    second = _flowkit(tmp_path, "run", "wf.yaml", "--plain")
    assert "[SUCCEEDED] validate" in second.stdout and "[SUCCEEDED] load" in second.stdout
    assert "[CACHED]    extract" in second.stdout and "[CACHED]    other" in second.stdout
    _write(tmp_path, "conf/b.sql", "select 2")
    third = _flowkit(tmp_path, "run", "wf.yaml", "--dry-run")
    assert "run    load  (input files changed: conf/*.sql)" in third.stdout
    assert "cached validate" in third.stdout


def test_output_file_parallelism_flag_and_status_of_a_workflow_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          ok: echo fine
          bad: {command: "exit 7", depends_on: [ok]}
        """,
    )
    run = _flowkit(tmp_path, "run", "wf.yaml", "--parallelism", "2", "--output", "out.json")
    assert run.returncode == 1
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["status"] == "failed" and data["exit_code"] == 1
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["ok"]["exit_code"] == 0 and steps["ok"]["attempts"] == 1
    assert (
        steps["bad"]["exit_code"] == 7
        and "exited with status 7" in steps["bad"]["error"]["message"]
    )
    status = _flowkit(tmp_path, "status", "wf.yaml")
    assert status.returncode == 0 and "failed" in status.stdout and "bad" in status.stdout


def test_output_file_for_a_python_flow(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "pipe.py",
        """
        from flowkit import Flow
        f = Flow("py")

        @f.step()
        def one() -> int:
            return 1
        """,
    )
    run = _flowkit(tmp_path, "run", "pipe.py:f", "--output", "r.json")
    assert run.returncode == 0, run.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "succeeded" and data["steps"][0]["exit_code"] == 0


@pytest.mark.parametrize("form", ["steps", "tasks"])
def test_both_top_level_spellings_load(tmp_path: Path, form: str) -> None:
    wf = _write(tmp_path, "wf.yaml", f"{form}:\n  a: echo a\n")
    assert list(load_workflow(wf).steps) == ["a"]


def test_resources_triggers_pools_defaults_and_hints(tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    (tmp_path / "log").mkdir()
    span = 'echo "$(date +%s.%N) start" >> log/{n}; sleep 0.3; echo "$(date +%s.%N) end" >> log/{n}'
    wf = _write(
        tmp_path,
        "wf.yaml",
        f"""
        pools: {{db: 1}}
        defaults:
          environment: {{SHARED: base, OVER: base}}
          cache_ttl: 3600
        tasks:
          big_a: {{command: '{span.format(n="a")}', cpu_cores: {cpus}, memory_mb: 64}}
          big_b: {{command: '{span.format(n="b")}', cpu_cores: {cpus}, disk_gb: 20}}
          db_1: {{command: '{span.format(n="c")}', pool: db, description: loads}}
          db_2: {{command: '{span.format(n="d")}', pool: db}}
          show_env: {{command: 'echo $SHARED $OVER', environment: {{OVER: mine}}}}
          broken: {{command: "exit 2"}}
          on_broken: {{command: echo paged, depends_on: [broken], trigger: one_failed}}
        """,
    )
    flow = load_workflow(wf)
    assert flow.hints["big_b"] == {"disk_gb": 20} and flow.hints["db_1"]["description"] == "loads"
    assert flow.steps["big_a"].memory == 64 * 2**20 and flow.steps["big_a"].cpus == cpus
    assert flow.steps["show_env"].cache_ttl == 3600
    result = flow.run(state_dir=tmp_path / "state", workers=4, fail_fast=False)
    assert result["show_env"].output.strip() == "base mine"
    assert result["on_broken"].output.strip() == "paged"

    def spans(n: str) -> tuple[float, float]:
        start, end = (
            float(x.split()[0]) for x in (tmp_path / f"log/{n}").read_text().split("\n")[:2]
        )
        return start, end

    for first, second in (("a", "b"), ("c", "d")):  # the machine's CPUs, and pool db: one at once
        (s1, e1), (s2, e2) = spans(first), spans(second)
        assert e1 <= s2 or e2 <= s1, (first, second)


def test_a_task_needing_more_than_the_machine_is_refused_before_running(tmp_path: Path) -> None:
    _write(tmp_path, "wf.yaml", "tasks:\n  huge: {command: echo, cpu_cores: 4096}\n")
    run = _flowkit(tmp_path, "run", "wf.yaml")
    assert run.returncode == 2 and "needs cpus=4096" in run.stderr
    assert not (tmp_path / ".flowkit").exists()


def test_conditions_are_decided_per_matrix_instance_and_remembered(tmp_path: Path) -> None:
    _write(tmp_path, "helpers.py", "def scale(factor: int = 2) -> int:\n    return factor\n")
    _write(tmp_path, "conf/factor.txt", "2")
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          part:
            command: "echo {{ matrix.n }} >> ran.txt"
            matrix: {n: [1, 2, 3, 4]}
            condition: "matrix.n % 2 == 0"
          scaled: {fn: "helpers:scale", inputs: conf/*.txt}
        """,
    )
    flow = load_workflow(wf)
    result = flow.run(state_dir=tmp_path / "state")
    assert result.ok and (tmp_path / "ran.txt").read_text() == "2\n4\n"
    assert result["part[n=1]"].status is Status.SKIPPED
    again = flow.run(state_dir=tmp_path / "state")
    assert (
        again["part[n=1]"].status is Status.SKIPPED and again["part[n=2]"].status is Status.CACHED
    )
    assert again["scaled"].status is Status.CACHED
    _write(tmp_path, "conf/factor.txt", "3")
    changed = load_workflow(wf).plan(state_dir=tmp_path / "state")
    assert changed.steps["scaled"].reason == "input files changed: conf/*.txt"


def test_moving_the_project_folder_keeps_finished_tasks_cached(tmp_path: Path) -> None:
    _write(tmp_path, "a/etl/step.py", "print('step')\n")
    _write(
        tmp_path,
        "a/wf.yaml",
        """
        tasks:
          one: {script: etl/step.py, working_dir: etl}
          two: {command: ["echo", "two"], depends_on: [one]}
        """,
    )
    state = tmp_path / "state"
    assert load_workflow(tmp_path / "a/wf.yaml").run(state_dir=state).ok
    (tmp_path / "a").rename(tmp_path / "b")
    again = load_workflow(tmp_path / "b/wf.yaml").run(state_dir=state)
    assert [r.status for r in again] == [Status.CACHED, Status.CACHED]


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_ctx_upstream_shows_a_python_step_how_its_upstreams_ended(
    tmp_path: Path, executor: str
) -> None:
    from flowkit.loader import load_flow

    _write(
        tmp_path,
        f"upflow_{executor}.py",
        """
        from flowkit import Flow

        f = Flow("up")

        @f.step()
        def good() -> int:
            return 1

        @f.step()
        def bad() -> int:
            raise ValueError("no")

        @f.step(depends_on=["good", "bad"], trigger="all_done")
        def after(ctx) -> dict:
            return {n: (r.status.value, r.attempts, str(r.error)) for n, r in ctx.upstream.items()}
        """,
    )
    flow = load_flow(f"{tmp_path}/upflow_{executor}.py:f")
    result = flow.run(state_dir=tmp_path / "state", executor=executor, workers=2, fail_fast=False)
    assert result["after"].output == {
        "good": ("succeeded", 1, "None"),
        "bad": ("failed", 1, "ValueError: no"),
    }


def test_template_values_in_a_shell_command_are_data_not_code(tmp_path: Path) -> None:
    evil = "a'b\"; touch pwned; echo $(touch pwned2) `touch pwned3` c"
    _write(
        tmp_path,
        "publish.py",
        f"import json, os\njson.dump({evil!r}, open(os.environ['FLOWKIT_OUTPUT'], 'w'))\n",
    )
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          src: {script: publish.py}
          bare: {command: "printf '%s|' {{ src.output }} x"}
          double: {command: "printf '%s|' \\"[{{ src.output }}]\\""}
          single: {command: "printf '%s|' '[{{ src.output }}]'"}
          args: {command: "printf '%s|'", args: ["{{ src.output }}"]}
        """,
    )
    result = load_workflow(wf).run(state_dir=tmp_path / "state")
    assert result.ok, result.summary()
    assert not list(tmp_path.glob("pwned*"))
    assert result["bare"].output == f"{evil}|x|"
    assert result["double"].output == f"[{evil}]|"
    assert result["single"].output == f"[{evil}]|"
    assert result["args"].output == f"{evil}|"


def test_conditions_count_upstream_failed_as_failed_and_can_tell_it_apart(tmp_path: Path) -> None:
    wf = _write(
        tmp_path,
        "wf.yaml",
        """
        tasks:
          extract: {command: "exit 3"}
          load: {command: echo load, depends_on: [extract]}
          page:
            command: echo "page {{ load.status }}"
            depends_on: [load]
            condition: "{{ load.failed and load.status == 'upstream_failed' }}"
          tidy:
            command: echo tidy
            depends_on: [load]
            skip_if: "{{ load.failed }}"
          direct:
            command: echo direct
            depends_on: [extract]
            condition: "{{ extract.failed and extract.status == 'failed' }}"
        """,
    )
    result = load_workflow(wf).run(state_dir=tmp_path / "state", fail_fast=False)
    assert result["load"].status is Status.UPSTREAM_FAILED
    assert result["page"].output.strip() == "page upstream_failed"
    assert result["tidy"].status is Status.SKIPPED
    assert result["direct"].status is Status.SUCCEEDED
