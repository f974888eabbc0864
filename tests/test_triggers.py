"""Trigger rules as Airflow defines them, checked over every pair of upstream outcomes.

The expected verdicts below are transcribed from Airflow's documentation of trigger rules
("Trigger Rules" in the DAG concepts: all_failed counts failed *or upstream_failed*, one_done
counts succeeded or failed, ...) and from the states its scheduler gives a task whose rule does
not hold (``airflow/ti_deps/deps/trigger_rule_dep.py``: ``all_success``, ``none_failed`` and
``none_failed_min_one_success`` below a failure are ``upstream_failed``; ``one_success`` with no
success is ``upstream_failed`` unless every upstream was skipped; the other rules skip). They are
not derived from flowkit's code.
"""

from __future__ import annotations

import io
import itertools
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import run_flowkit
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkit import Flow, RunResult, Status, StepSkipped, Trigger
from flowkit.events import Event
from flowkit.resume import Decision
from flowkit.rules import judge

RULES = [t.value for t in Trigger]
OUTCOMES = ["success", "failed", "skipped", "upstream_failed", "cached"]
BASE = {"success": "S", "cached": "S", "failed": "F", "skipped": "K", "upstream_failed": "U"}
PAIRS = ["SS", "SF", "SK", "SU", "FF", "FK", "FU", "KK", "KU", "UU"]

#: Airflow's verdict per rule and (unordered) pair of upstream outcomes, in PAIRS order:
#: R runs, K is skipped, U is upstream_failed. S = success (or cached), F = failed,
#: K = skipped, U = upstream_failed.
AIRFLOW = {
    "all_success": "RUKUUUUKUU",
    "all_failed": "KKKKRKRKKR",
    "all_done": "RRRRRRRRRR",
    "all_skipped": "KKKKKKKRKK",
    "one_success": "RRRRUUUKUU",
    "one_failed": "KRKRRRRKRR",
    "one_done": "RRRRRRRKKK",
    "none_failed": "RURUUUURUU",
    "none_failed_min_one_success": "RURUUUUKUU",
    "none_skipped": "RRKRRKRKKR",
    "always": "RRRRRRRRRR",
}
STATE = {"R": Status.SUCCEEDED, "K": Status.SKIPPED, "U": Status.UPSTREAM_FAILED}


def expected(rule: str, first: str, second: str) -> str:
    pair = BASE[first] + BASE[second]
    key = pair if pair in PAIRS else pair[::-1]
    return AIRFLOW[rule][PAIRS.index(key)]


def test_the_table_covers_every_rule() -> None:
    assert sorted(AIRFLOW) == sorted(RULES)


def _upstream(flow: Flow, name: str, outcome: str) -> None:
    """Add step ``name`` to ``flow``, made to end in ``outcome``."""
    if outcome == "failed":

        def fail() -> None:
            raise RuntimeError(f"{name} broke")

        flow.step(name=name)(fail)
    elif outcome == "skipped":
        flow.step(name=name, when=lambda: False)(lambda: name)
    elif outcome == "upstream_failed":

        def root() -> None:
            raise RuntimeError(f"{name}_root broke")

        flow.step(name=f"{name}_root")(root)
        flow.step(name=name, depends_on=[f"{name}_root"])(lambda: name)
    else:  # success, cached
        flow.step(name=name)(lambda: name)


def _pair_flow(first: str, second: str) -> Flow:
    """Upstreams u1, u2 ending as given, and below them one step per rule (named after it)."""
    flow = Flow(f"pair-{first}-{second}")
    _upstream(flow, "u1", first)
    _upstream(flow, "u2", second)
    for rule in RULES:
        flow.step(name=rule, trigger=rule, depends_on=["u1", "u2"])(lambda: "ran")
    return flow


def _journal(state_dir: Path, flow: str) -> list[dict[str, Any]]:
    (journal,) = state_dir.glob(f"{flow}/*/journal.jsonl")
    return [orjson.loads(line) for line in journal.read_bytes().splitlines()]


@pytest.mark.parametrize("executor", ["inline", "thread"])
@pytest.mark.parametrize(
    ("first", "second"), list(itertools.combinations_with_replacement(OUTCOMES, 2))
)
def test_every_rule_against_a_pair_of_upstream_outcomes(
    executor: str, first: str, second: str, tmp_path: Path
) -> None:
    flow = _pair_flow(first, second)
    run: Callable[..., RunResult] = lambda **kw: flow.run(  # noqa: E731
        state_dir=tmp_path, executor=executor, workers=2, fail_fast=False, **kw
    )
    cached = [u for u, o in (("u1", first), ("u2", second)) if o == "cached"]
    if cached:  # an earlier session made them: they are restored below, not run
        assert run(only=cached).ok
    result = run()
    for u, outcome in (("u1", first), ("u2", second)):
        assert result[u].status.value == ("succeeded" if outcome == "success" else outcome)
    skip_records = {
        r["step"]: r for r in _journal(tmp_path, flow.name)[-40:] if r.get("ev") == "skip"
    }
    for rule in RULES:
        verdict = expected(rule, first, second)
        r = result[rule]
        assert r.status is STATE[verdict], (rule, first, second, r.status, r.reason)
        if verdict == "R":
            assert r.output == "ran"
            continue
        # the reason names the rule, or the upstream that decided it
        assert rule in r.reason or "'u1'" in r.reason or "'u2'" in r.reason, (rule, r.reason)
        if verdict == "U":
            # it blames a failure: an upstream that failed, or "no upstream succeeded"
            assert "fail" in r.reason or "no upstream succeeded" in r.reason, (rule, r.reason)
        rec = skip_records[rule]  # journaled, in the state the run reported
        assert rec["reason"] == r.reason
        assert rec.get("status", "skipped") == r.status.value


def test_a_step_skipped_by_its_own_condition_stays_skipped(tmp_path: Path) -> None:
    flow = Flow("own")

    @flow.step(when=lambda: False)
    def maybe() -> None: ...

    @flow.step()
    def after(maybe: None) -> None: ...

    result = flow.run(state_dir=tmp_path)
    assert result["maybe"].status is Status.SKIPPED and result["maybe"].reason == "condition false"
    assert result["after"].status is Status.SKIPPED
    assert result["after"].reason == "upstream 'maybe' was skipped"
    assert result.ok


def test_upstream_failed_propagates_down_a_chain_with_its_cause(tmp_path: Path) -> None:
    flow = Flow("chain")

    @flow.step()
    def a() -> None:
        raise RuntimeError("a broke")

    @flow.step()
    def b(a: None) -> None: ...

    @flow.step()
    def c(b: None) -> None: ...

    seen: list[Event] = []
    result = flow.run(state_dir=tmp_path, fail_fast=False, on_event=seen.append)
    assert result["b"].status is Status.UPSTREAM_FAILED
    assert result["b"].reason == "upstream 'a' failed"
    assert result["c"].status is Status.UPSTREAM_FAILED
    assert result["c"].reason == "upstream 'b' did not run: upstream_failed"
    assert result.counts() == {"failed": 1, "upstream_failed": 2}
    assert "1 failed, 2 upstream_failed" in result.summary()
    skipped = [(e.step, e.status) for e in seen if isinstance(e, StepSkipped)]
    assert skipped == [("b", Status.UPSTREAM_FAILED), ("c", Status.UPSTREAM_FAILED)]


def test_a_step_without_upstreams_runs_whatever_its_rule(tmp_path: Path) -> None:
    flow = Flow("alone")
    for rule in RULES:
        flow.step(name=rule, trigger=rule)(lambda: "ran")
    result = flow.run(state_dir=tmp_path)
    assert {r.name: r.status for r in result} == {rule: Status.SUCCEEDED for rule in RULES}


def test_timed_out_counts_as_failed_for_the_rules() -> None:
    ups = [("slow", Status.TIMED_OUT), ("ok", Status.SUCCEEDED)]
    assert judge(Trigger.ONE_FAILED, ups) is None
    blocked = judge(Trigger.ALL_SUCCESS, ups)
    assert blocked is not None and blocked.status is Status.UPSTREAM_FAILED
    assert blocked.reason == "upstream 'slow' timed out"


# --- fail-fast ----------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_under_fail_fast_only_rules_that_react_to_failures_still_run(
    executor: str, tmp_path: Path
) -> None:
    flow = Flow("halted")

    @flow.step()
    def a_ok() -> str:
        return "ok"

    @flow.step(depends_on=["a_ok"])
    def b_bad() -> None:
        time.sleep(0.05)
        raise RuntimeError("b broke")

    @flow.step(depends_on=["a_ok"])
    def c_slow() -> str:  # still running when b fails: finishes, is kept
        time.sleep(0.4 if executor == "thread" else 0)
        return "slow"

    @flow.step()
    def z_later(c_slow: str) -> str:  # not started after the failure
        return "never"

    for rule in RULES:
        flow.step(name=rule, trigger=rule, depends_on=["a_ok", "b_bad"])(lambda: "ran")
    result = flow.run(state_dir=tmp_path, executor=executor, workers=3)
    assert result["b_bad"].status is Status.FAILED
    assert result["z_later"].status is Status.SKIPPED
    assert result["z_later"].reason == "fail-fast: step 'b_bad' failed"
    runs = {"all_done", "one_failed", "one_done", "always"}
    upstream_failed = {"all_success", "none_failed", "none_failed_min_one_success"}
    for rule in RULES:
        r = result[rule]
        if rule in runs:
            assert r.status is Status.SUCCEEDED, (rule, r.reason)
        elif rule in upstream_failed:
            assert r.status is Status.UPSTREAM_FAILED, (rule, r.reason)
            assert "'b_bad' failed" in r.reason
        elif rule == "all_failed":  # judged by its rule, which does not hold
            assert r.status is Status.SKIPPED
            assert r.reason == "trigger all_failed: upstream 'a_ok' did not fail"
        else:  # one_success, none_skipped would run, all_skipped would not: fail-fast stops them
            assert r.status is Status.SKIPPED, (rule, r.reason)
            assert r.reason == "fail-fast: step 'b_bad' failed"


# --- resume -------------------------------------------------------------------------------------


def _release(broken: dict[str, bool], calls: list[str]) -> Flow:
    flow = Flow("release")

    @flow.step()
    def build() -> str:
        calls.append("build")
        if broken["build"]:
            raise RuntimeError("compiler crashed")
        return "artifact"

    @flow.step()
    def test(build: str) -> str:
        calls.append("test")
        return f"tested {build}"

    @flow.step(depends_on=["test"], trigger="none_failed")
    def deploy() -> str:
        calls.append("deploy")
        return "deployed"

    @flow.step(depends_on=["test"], trigger="one_failed")
    def page_oncall() -> str:
        calls.append("page_oncall")
        return "paged"

    @flow.step(depends_on=["test"], trigger="all_failed")
    def cleanup() -> str:
        calls.append("cleanup")
        return "cleaned"

    return flow


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_resume_after_the_fix_re_decides_upstream_failed_steps(
    executor: str, tmp_path: Path
) -> None:
    broken, calls = {"build": True}, []
    flow = _release(broken, calls)
    first = flow.run(state_dir=tmp_path, executor=executor, workers=2)
    assert {r.name: r.status.value for r in first} == {
        "build": "failed",
        "test": "upstream_failed",
        "deploy": "upstream_failed",
        "page_oncall": "succeeded",
        "cleanup": "succeeded",
    }
    assert sorted(calls) == ["build", "cleanup", "page_oncall"]
    state = flow.load_state(state_dir=tmp_path)
    assert {n: r.get("status") for n, r in state.session.items() if r["ev"] == "skip"} == {
        "test": "upstream_failed",
        "deploy": "upstream_failed",
    }
    # the dry run agrees with what a resume does, before it happens
    plan = flow.plan(state_dir=tmp_path)
    assert plan.steps["build"].decision is Decision.RUN
    assert plan.steps["build"].reason == "failed before"
    assert plan.steps["page_oncall"].decision is Decision.SKIP

    broken["build"] = False
    calls.clear()
    second = flow.run(state_dir=tmp_path, executor=executor, workers=2)
    assert {r.name: r.status.value for r in second} == {
        "build": "succeeded",
        "test": "succeeded",
        "deploy": "succeeded",
        "page_oncall": "skipped",
        "cleanup": "skipped",
    }
    assert second["page_oncall"].reason == "trigger one_failed: no upstream failed"
    assert sorted(calls) == ["build", "deploy", "test"]
    assert second.ok

    calls.clear()  # and once more: everything is restored, nothing runs
    third = flow.run(state_dir=tmp_path, executor=executor, workers=2)
    assert calls == [] and third.ok
    assert third["deploy"].status is Status.CACHED


def test_a_journal_written_before_upstream_failed_existed_still_loads(tmp_path: Path) -> None:
    broken, calls = {"build": True}, []
    flow = _release(broken, calls)
    flow.run(state_dir=tmp_path)
    (journal,) = tmp_path.glob("release/*/journal.jsonl")
    old = [orjson.loads(line) for line in journal.read_bytes().splitlines()]
    for rec in old:  # what an older flowkit wrote: a skip had no status, lines had no seal
        rec.pop("crc", None)
        if rec.get("ev") == "skip":
            rec.pop("status", None)
        if rec.get("ev") == "run":
            rec["format"] = 1
    (journal.parent / "snapshot.json").unlink()
    journal.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in old))
    state = flow.load_state(state_dir=tmp_path)
    assert state.session["test"]["ev"] == "skip"
    broken["build"] = False
    result = flow.run(state_dir=tmp_path)
    assert result.ok and result["deploy"].status is Status.SUCCEEDED


# --- dry run ------------------------------------------------------------------------------------


def test_dry_run_predicts_trigger_verdicts_from_known_outcomes(tmp_path: Path) -> None:
    flow = Flow("predict")

    @flow.step(when=lambda: False)
    def maybe() -> None: ...

    @flow.step()
    def items() -> int:
        return 3  # not a list: mapping over it fails

    @flow.step(map_over="items")
    def each(items: int) -> int:
        return items

    @flow.step()
    def total(each: list[int]) -> int:
        return sum(each)

    @flow.step(depends_on=["maybe"])
    def strict() -> None: ...

    @flow.step(depends_on=["maybe"], trigger="all_skipped")
    def fallback() -> None: ...

    @flow.step(depends_on=["total"], trigger="one_failed")
    def alert() -> None: ...

    @flow.step(depends_on=["items"], trigger="one_failed")
    def watch() -> None: ...

    flow.run(state_dir=tmp_path, only=["items", "maybe"])
    plan = flow.plan(state_dir=tmp_path)
    verdicts = {n: (s.decision, s.reason) for n, s in plan.steps.items()}
    assert verdicts["each"][0] is Decision.RUN and verdicts["each"][1].startswith("fails: ")
    assert verdicts["total"] == (Decision.UPSTREAM_FAILED, "upstream 'each' failed")
    assert verdicts["strict"] == (Decision.SKIP, "upstream 'maybe' was skipped")
    assert verdicts["fallback"][0] is Decision.RUN
    assert verdicts["alert"][0] is Decision.RUN  # 'total' is upstream_failed: a failure
    assert verdicts["watch"] == (Decision.SKIP, "trigger one_failed: no upstream failed")
    result = flow.run(state_dir=tmp_path, fail_fast=False)
    for name, s in plan.steps.items():
        ran = result[name].status in (Status.SUCCEEDED, Status.FAILED)
        assert ran == (s.decision is Decision.RUN), (name, result[name].status, s)
    assert result["total"].status is Status.UPSTREAM_FAILED
    assert result["strict"].reason == plan.steps["strict"].reason


def test_dry_run_says_when_a_verdict_assumes_a_step_succeeds(tmp_path: Path) -> None:
    flow = Flow("assume")

    @flow.step()
    def work() -> None: ...

    @flow.step(depends_on=["work"], trigger="one_failed")
    def alert() -> None: ...

    s = flow.plan(state_dir=tmp_path).steps["alert"]
    assert s.decision is Decision.SKIP and s.uncertain
    assert s.reason == "trigger one_failed: no upstream failed, if work succeeds"


# --- the command line ---------------------------------------------------------------------------

RELEASE = textwrap.dedent(
    """
    import os
    from flowkit import Flow

    release = Flow("release")

    @release.step()
    def build() -> str:
        if os.environ.get("BUILD_BROKEN"):
            raise RuntimeError("compiler crashed")
        return "artifact"

    @release.step()
    def test(build: str) -> str:
        return "tests passed"

    @release.step(depends_on=["test"], trigger="none_failed")
    def deploy_production() -> None:
        print("deploying")

    @release.step(depends_on=["test"], trigger="one_failed")
    def page_oncall() -> None:
        print("paging")
    """
)


def test_cli_guard_and_alert_two_steps_below_a_failure(tmp_path: Path) -> None:
    (tmp_path / "release.py").write_text(RELEASE)
    r = run_flowkit(tmp_path, "run", "release.py:release", BUILD_BROKEN="1")
    assert r.returncode == 1, r.stderr
    out = r.stdout.splitlines()
    assert "[UPSTREAM_FAILED] test: upstream 'build' failed" in out
    assert (
        "[UPSTREAM_FAILED] deploy_production: upstream 'test' did not run: upstream_failed "
        "(trigger none_failed)" in out
    )
    assert any(x.startswith("[SUCCEEDED] page_oncall") for x in out), r.stdout
    assert "1 succeeded, 1 failed, 2 upstream_failed" in r.stdout

    status = run_flowkit(tmp_path, "status", "release.py:release")
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[2:]}
    assert rows == {
        "build": "failed",
        "test": "upstream_failed",
        "deploy_production": "upstream_failed",
        "page_oncall": "succeeded",
    }
    report = run_flowkit(tmp_path, "report", "release.py:release")
    assert "  upstream_failed deploy_production: upstream 'test' did not run" in report.stdout

    plan = run_flowkit(tmp_path, "run", "release.py:release", "--dry-run")
    assert "  skip   page_oncall  (trigger one_failed: no upstream failed, if test succeeds)" in (
        plan.stdout.splitlines()
    ), plan.stdout

    fixed = run_flowkit(tmp_path, "run", "release.py:release")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert any(x.startswith("[SUCCEEDED] deploy_production") for x in fixed.stdout.splitlines())
    assert "[SKIPPED]   page_oncall: trigger one_failed: no upstream failed" in fixed.stdout


def test_cli_rejects_an_unknown_rule_naming_the_choices(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from flowkit import Flow\nf = Flow('f')\n"
        "@f.step(trigger='one_succeeded')\ndef a() -> None: ...\n"
    )
    r = run_flowkit(tmp_path, "run", "bad.py:f")
    assert r.returncode == 2
    assert "trigger='one_succeeded' is invalid" in r.stderr
    assert "one_success" in r.stderr


def test_cli_explain_names_the_rule_that_keeps_a_step_from_running(tmp_path: Path) -> None:
    (tmp_path / "release.py").write_text(RELEASE)
    run_flowkit(tmp_path, "run", "release.py:release", BUILD_BROKEN="1")
    r = run_flowkit(tmp_path, "explain", "release.py:release", "page_oncall")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "page_oncall: would be skipped — trigger one_failed: no upstream failed, if test succeeds."
    )


WORKFLOW = textwrap.dedent(
    """
    name: nightly
    steps:
      build: "exit 3"
      test: {run: "echo tested", depends_on: [build]}
      deploy: {run: "echo deployed", depends_on: [test], trigger: none_failed}
      page: {run: "echo paged", depends_on: [test], trigger: one_failed}
      either: {run: "echo either", depends_on: [build, test], trigger: one_success}
    """
)


def test_yaml_workflow_steps_take_the_same_rules_and_states(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    (tmp_path / "nightly.yaml").write_text(WORKFLOW)
    r = run_flowkit(tmp_path, "run", "nightly.yaml", "--continue-on-error")
    assert r.returncode == 1, r.stdout + r.stderr
    status = run_flowkit(tmp_path, "status", "nightly.yaml")
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[2:]}
    assert rows == {
        "build": "failed",
        "test": "upstream_failed",
        "deploy": "upstream_failed",
        "page": "succeeded",
        "either": "upstream_failed",
    }


def test_live_view_shows_upstream_failed_apart_from_skipped() -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    from flowkit.progress import LiveListener

    console = Console(file=io.StringIO(), record=True, width=120, force_terminal=False)
    live = LiveListener(console)
    t = time.time()
    live.on_event(StepSkipped("r1", "test", t, "upstream 'build' failed", Status.UPSTREAM_FAILED))
    live.on_event(StepSkipped("r1", "page", t, "trigger one_failed: no upstream failed"))
    live.close()
    text = console.export_text()
    assert "⊘ test  upstream_failed: upstream 'build' failed" in text
    assert "- page  skipped: trigger one_failed: no upstream failed" in text


# --- the dry run agrees with the run ------------------------------------------------------------

PLANNED = {
    Decision.CACHED: "cached",
    Decision.RUN: "succeeded",
    Decision.SKIP: "skipped",
    Decision.UPSTREAM_FAILED: "upstream_failed",
}


@st.composite
def _dags(draw: st.DrawFn) -> tuple[list[list[int]], list[str], set[int], set[int]]:
    n = draw(st.integers(2, 7))
    ups = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(n)]
    rules = [draw(st.sampled_from(RULES)) for _ in range(n)]
    roots = [i for i in range(n) if not ups[i]]
    unmet = draw(st.sets(st.sampled_from(roots))) if roots else set()
    broken = draw(st.sets(st.integers(0, n - 1)))
    return ups, rules, unmet, broken - unmet


@settings(max_examples=60, deadline=None)
@given(_dags())
def test_dry_run_predicts_every_verdict_of_the_resume_after_a_fix(
    dag: tuple[list[list[int]], list[str], set[int], set[int]],
) -> None:
    ups, rules, unmet, broken = dag
    failing = {f"s{i}" for i in broken}
    flow = Flow("random")
    for i, (deps, rule) in enumerate(zip(ups, rules, strict=True)):
        name = f"s{i}"

        def fn(name: str = name) -> str:
            if name in failing:
                raise RuntimeError(f"{name} broke")
            return name

        when = (lambda: False) if i in unmet else None
        flow.step(name=name, trigger=rule, depends_on=[f"s{u}" for u in deps], when=when)(fn)
    with tempfile.TemporaryDirectory() as state:
        flow.run(state_dir=state, fail_fast=False)
        failing.clear()  # the fix
        plan = flow.plan(state_dir=state)
        result = flow.run(state_dir=state, fail_fast=False)
    predicted = {n: PLANNED[s.decision] for n, s in plan.steps.items()}
    assert predicted == {r.name: r.status.value for r in result}
