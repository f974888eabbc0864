"""Engine semantics: ordering, retries, failure modes, triggers, conditions, caching, events."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import flows
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowkit import (
    Backoff,
    Flow,
    RunOptions,
    RunStatus,
    Status,
    StepCached,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    Trigger,
)
from flowkit.events import Event, RunFinished, RunStarted


class Recorder:
    """Collects events; answers ordering questions."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)

    def index(self, kind: type, step: str) -> int:
        for i, e in enumerate(self.events):
            if isinstance(e, kind) and getattr(e, "step", None) == step:
                return i
        raise AssertionError(f"no {kind.__name__} for {step}")

    def finished_before_started(self, first: str, then: str) -> bool:
        return self.index(StepSucceeded, first) < self.index(StepStarted, then)


@pytest.fixture(params=["inline", "thread", "process"])
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_join_starts_after_both_branches_finish(executor: str, tmp_path: Path) -> None:
    seen = Recorder()
    workers = 1 if executor == "inline" else 2
    result = flows.diamond.run(
        state_dir=tmp_path, executor=executor, workers=workers, listeners=[seen]
    )
    assert result.ok
    assert result["join"].output == 112
    for first, then in [("top", "left"), ("top", "right"), ("left", "join"), ("right", "join")]:
        assert seen.finished_before_started(first, then)


def test_async_steps_run_on_every_executor(executor: str, tmp_path: Path) -> None:
    workers = 1 if executor == "inline" else 2
    result = flows.diamond_async.run(state_dir=tmp_path, executor=executor, workers=workers)
    assert result["doubled"].output == 224


@settings(max_examples=25, deadline=None)
@given(
    st.integers(min_value=1, max_value=30),
    st.randoms(use_true_random=False),
    st.sampled_from([1, 3]),
)
def test_random_dag_never_starts_a_step_before_its_dependencies(
    n: int, rnd: random.Random, workers: int
) -> None:
    import tempfile

    flow = Flow("random")
    edges: dict[str, list[str]] = {}
    for i in range(n):
        deps = [f"s{j}" for j in range(i) if rnd.random() < 0.3]
        edges[f"s{i}"] = deps
        flow.step(name=f"s{i}", depends_on=deps)(lambda: None)
    seen = Recorder()
    with tempfile.TemporaryDirectory() as d:
        result = flow.run(state_dir=d, workers=workers, listeners=[seen])
    assert result.ok
    for name, deps in edges.items():
        for dep in deps:
            assert seen.finished_before_started(dep, name)


def test_generations_are_deterministic_tiers() -> None:
    assert flows.diamond.generations() == [["top"], ["left", "right"], ["join"]]


def test_retries_count_attempts_and_wait_per_backoff(tmp_path: Path) -> None:
    calls: list[int] = []
    flow = Flow("flaky")

    @flow.step(retries=3, backoff=Backoff(initial=1.0, factor=2.0, max=3.0))
    def fetch(ctx: Any) -> str:
        calls.append(ctx.attempt)
        if len(calls) < 4:
            raise ConnectionError(f"try {len(calls)}")
        return "ok"

    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:  # the delays are what is checked, not real waiting
        slept.append(s)
        now[0] += s

    seen = Recorder()
    result = flow.run(
        state_dir=tmp_path,
        listeners=[seen],
        options=RunOptions(clock=lambda: now[0], sleep=sleep),
    )
    assert result.ok and result["fetch"].attempts == 4 and calls == [1, 2, 3, 4]
    delays = [e.delay_s for e in seen.events if isinstance(e, StepRetrying)]
    assert delays == [1.0, 2.0, 3.0] and slept == delays
    assert [str(e) for e in result["fetch"].attempt_errors] == [
        "ConnectionError: try 1",
        "ConnectionError: try 2",
        "ConnectionError: try 3",
    ]


def test_retry_wait_uses_the_injected_clock_not_real_time(tmp_path: Path) -> None:
    flow = Flow("slowretry")
    n = {"calls": 0}

    @flow.step(retries=2, backoff=100.0)
    def once_flaky() -> int:
        n["calls"] += 1
        if n["calls"] == 1:
            raise OSError("flaky")
        return 7

    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    started = time.monotonic()
    result = flow.run(state_dir=tmp_path, options=RunOptions(clock=lambda: now[0], sleep=sleep))
    assert result.ok and slept == [100.0]
    assert time.monotonic() - started < 5


def test_retry_on_filters_exception_types(tmp_path: Path) -> None:
    flow = Flow("filter")
    calls = {"n": 0}

    @flow.step(retries=5, retry_on=ConnectionError)
    def fetch() -> None:
        calls["n"] += 1
        raise ValueError("bad data is not retried")

    result = flow.run(state_dir=tmp_path)
    assert result["fetch"].status is Status.FAILED and calls["n"] == 1


def test_jitter_is_reproducible_with_a_seed() -> None:
    b = Backoff(initial=1.0, factor=2.0, max=60.0, jitter=0.5)
    first = [b.delay(i, random.Random(7)) for i in range(1, 5)]
    again = [b.delay(i, random.Random(7)) for i in range(1, 5)]
    assert first == again
    assert all(0.5 * 2 ** (i - 1) <= d <= 1.5 * 2 ** (i - 1) for i, d in enumerate(first, 1))


def test_retrying_step_does_not_block_a_parallel_sibling(tmp_path: Path) -> None:
    flow = Flow("sibling")
    attempts = {"n": 0}

    @flow.step(retries=1, backoff=0.5)
    def flaky() -> None:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OSError("once")

    @flow.step()
    def a() -> None:
        time.sleep(0.05)

    @flow.step()
    def b(a: None) -> None:
        time.sleep(0.05)

    seen = Recorder()
    result = flow.run(state_dir=tmp_path, workers=2, listeners=[seen])
    assert result.ok
    # the sibling branch finished while flaky was waiting for its retry
    assert seen.index(StepSucceeded, "b") < seen.index(StepSucceeded, "flaky")


def _two_branches(fail: str) -> Flow:
    flow = Flow("branches")

    @flow.step()
    def a1() -> int:
        if fail == "a1":
            raise RuntimeError("a1 broke")
        return 1

    @flow.step()
    def a2(a1: int) -> int:
        return a1 + 1

    @flow.step()
    def b1() -> int:
        return 10

    @flow.step()
    def b2(b1: int) -> int:
        return b1 + 1

    return flow


def test_fail_fast_skips_steps_not_started_naming_the_failure(tmp_path: Path) -> None:
    result = _two_branches("a1").run(state_dir=tmp_path)
    assert result.status is RunStatus.FAILED and result.exit_code == 1
    assert result["a1"].status is Status.FAILED
    assert result["a1"].error is not None and "a1 broke" in result["a1"].error.message
    for name in ("b1", "b2"):
        assert result[name].status is Status.SKIPPED
    assert "a1" in result["b1"].reason and "fail-fast" in result["b1"].reason
    # below the failure: not run because of it, whatever fail-fast did
    assert result["a2"].status is Status.UPSTREAM_FAILED
    assert result["a2"].reason == "upstream 'a1' failed"


def test_continue_on_error_runs_independent_branches(tmp_path: Path) -> None:
    result = _two_branches("a1").run(state_dir=tmp_path, fail_fast=False)
    assert result["b2"].status is Status.SUCCEEDED and result["b2"].output == 11
    assert result["a2"].status is Status.UPSTREAM_FAILED
    assert result["a2"].reason == "upstream 'a1' failed"
    assert result.status is RunStatus.FAILED


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Trigger.ALL_SUCCESS, Status.UPSTREAM_FAILED),
        (Trigger.NONE_FAILED, Status.UPSTREAM_FAILED),
        (Trigger.ALL_DONE, Status.SUCCEEDED),
        (Trigger.ONE_FAILED, Status.SUCCEEDED),
        (Trigger.ALL_FAILED, Status.SKIPPED),
        (Trigger.ALWAYS, Status.SUCCEEDED),
    ],
)
def test_trigger_rules_with_one_failed_and_one_succeeded_upstream(
    rule: Trigger, expected: Status, tmp_path: Path
) -> None:
    flow = Flow("rules")

    @flow.step()
    def good() -> int:
        return 1

    @flow.step()
    def bad() -> int:
        raise RuntimeError("bad")

    @flow.step(trigger=rule, depends_on=["good", "bad"])
    def cleanup() -> str:
        return "cleaned"

    result = flow.run(state_dir=tmp_path, fail_fast=False)
    assert result["cleanup"].status is expected, result["cleanup"].reason


def test_none_failed_runs_after_a_skipped_upstream(tmp_path: Path) -> None:
    flow = Flow("nonefailed")

    @flow.step(when=lambda: False)
    def maybe() -> None: ...

    @flow.step(trigger="none_failed", depends_on=["maybe"])
    def after() -> str:
        return "ran"

    @flow.step(depends_on=["maybe"])
    def strict() -> str:
        return "ran"

    result = flow.run(state_dir=tmp_path)
    assert result["maybe"].status is Status.SKIPPED and result["maybe"].reason == "condition false"
    assert result["after"].status is Status.SUCCEEDED
    assert result["strict"].status is Status.SKIPPED
    assert result.ok


def test_one_failed_cleanup_still_runs_in_fail_fast_mode(tmp_path: Path) -> None:
    flow = Flow("cleanup")

    @flow.step()
    def work() -> None:
        raise RuntimeError("boom")

    @flow.step()
    def z_unrelated() -> None: ...

    @flow.step(trigger="one_failed", depends_on=["work"])
    def alert() -> str:
        return "alerted"

    result = flow.run(state_dir=tmp_path)
    assert result["alert"].status is Status.SUCCEEDED
    assert result["z_unrelated"].status is Status.SKIPPED


def test_when_receives_upstream_outputs_and_params(tmp_path: Path) -> None:
    flow = Flow("cond")

    @flow.step()
    def count() -> int:
        return 3

    @flow.step(when=lambda count, threshold: count > threshold)
    def big(count: int, threshold: int = 5) -> str:
        return "big"

    @flow.step()
    def after_big(big: str) -> str:
        return big

    small = flow.run(state_dir=tmp_path)
    assert small["big"].status is Status.SKIPPED and small["after_big"].status is Status.SKIPPED
    large = flow.run({"threshold": 1}, state_dir=tmp_path)
    assert large["after_big"].output == "big"


def test_condition_decision_is_remembered_on_resume(tmp_path: Path) -> None:
    flow = Flow("remember")
    evaluated = {"n": 0}

    def pred() -> bool:
        evaluated["n"] += 1
        return False

    @flow.step(when=pred)
    def maybe() -> None: ...

    flow.run(state_dir=tmp_path)
    again = flow.run(state_dir=tmp_path)
    assert again["maybe"].status is Status.SKIPPED and evaluated["n"] == 1


def test_resume_restores_outputs_and_ctx_without_rerunning(tmp_path: Path) -> None:
    flow = Flow("resume")
    runs: list[str] = []
    state = {"fail": True}

    @flow.step()
    def fetch(ctx: Any) -> tuple[int, int]:
        runs.append("fetch")
        ctx["source"] = "csv"
        return (1, 2)

    @flow.step()
    def use(fetch: tuple[int, int], ctx: Any) -> str:
        runs.append("use")
        if state["fail"]:
            raise RuntimeError("crash")
        return f"{type(fetch).__name__}{fetch} from {ctx['source']}"

    first = flow.run(state_dir=tmp_path)
    assert first["use"].status is Status.FAILED
    state["fail"] = False
    second = flow.run(state_dir=tmp_path)
    assert second["fetch"].status is Status.CACHED
    assert second["use"].output == "tuple(1, 2) from csv"
    assert runs == ["fetch", "use", "use"]
    third = flow.run(state_dir=tmp_path)
    assert all(r.status is Status.CACHED for r in third)
    assert runs == ["fetch", "use", "use"]


def test_code_version_change_reruns_step_and_downstream(tmp_path: Path) -> None:
    def build(version: str) -> Flow:
        flow = Flow("versions")

        @flow.step(code_version=version)
        def a() -> int:
            return 1 if version == "1" else 2

        @flow.step()
        def b(a: int) -> int:
            return a * 10

        @flow.step()
        def c() -> int:
            return 0

        return flow

    build("1").run(state_dir=tmp_path)
    result = build("2").run(state_dir=tmp_path)
    assert result["a"].status is Status.SUCCEEDED and result["a"].reason == "code changed"
    assert result["b"].status is Status.SUCCEEDED and result["b"].reason == "input changed: a"
    assert result["c"].status is Status.CACHED


def test_equal_upstream_output_keeps_data_dependents_cached(tmp_path: Path) -> None:
    def build(version: str) -> Flow:
        flow = Flow("dataaware")

        @flow.step(code_version=version)
        def a() -> int:
            return 5

        @flow.step()
        def b(a: int) -> int:
            return a + 1

        return flow

    build("1").run(state_dir=tmp_path)
    result = build("2").run(state_dir=tmp_path)
    assert result["a"].status is Status.SUCCEEDED
    assert result["b"].status is Status.CACHED


def test_cache_false_always_runs(tmp_path: Path) -> None:
    flow = Flow("nocache")
    calls = {"n": 0}

    @flow.step(cache=False)
    def notify() -> None:
        calls["n"] += 1

    flow.run(state_dir=tmp_path)
    result = flow.run(state_dir=tmp_path)
    assert calls["n"] == 2 and result["notify"].reason == "cache=False"


def test_fresh_runs_everything_again(tmp_path: Path) -> None:
    calls = {"n": 0}
    flow = Flow("fresh")

    @flow.step()
    def once() -> None:
        calls["n"] += 1

    flow.run(state_dir=tmp_path)
    flow.run(state_dir=tmp_path, fresh=True)
    assert calls["n"] == 2
    assert (tmp_path / "fresh" / "fresh.previous" / "journal.jsonl").exists()


def test_events_arrive_in_a_valid_order(tmp_path: Path) -> None:
    flow = Flow("events")
    n = {"calls": 0}

    @flow.step(retries=1)
    def flaky() -> int:
        n["calls"] += 1
        if n["calls"] == 1:
            raise OSError("once")
        return 1

    @flow.step()
    def broken(flaky: int) -> None:
        raise ValueError("no")

    @flow.step()
    def after(broken: None) -> None: ...

    seen = Recorder()
    flow.run(state_dir=tmp_path, listeners=[seen])
    kinds = [type(e).__name__ + ":" + getattr(e, "step", "") for e in seen.events]
    assert kinds == [
        "RunStarted:",
        "StepStarted:flaky",
        "StepRetrying:flaky",
        "StepStarted:flaky",
        "StepSucceeded:flaky",
        "StepStarted:broken",
        "StepFailed:broken",
        "StepSkipped:after",
        "RunFinished:",
    ]
    seen2 = Recorder()
    flow.run(state_dir=tmp_path, listeners=[seen2])
    assert isinstance(seen2.events[0], RunStarted) and seen2.events[0].resumed
    assert isinstance(seen2.events[1], StepCached)
    assert isinstance(seen2.events[-1], RunFinished)
    assert any(isinstance(e, StepFailed) for e in seen2.events)
    assert any(isinstance(e, StepSkipped) for e in seen2.events)


def test_a_failing_listener_never_fails_the_run(tmp_path: Path) -> None:
    def bad(event: Event) -> None:
        raise RuntimeError("listener bug")

    result = flows.diamond.run(state_dir=tmp_path, on_event=bad)
    assert result.ok


def test_thread_timeout_marks_step_timed_out_and_moves_on(tmp_path: Path) -> None:
    flow = Flow("timeouts")
    release = threading.Event()

    @flow.step(timeout=0.2)
    def stuck() -> None:
        release.wait(10)  # a blocking call that never returns in time

    @flow.step()
    def other() -> int:
        return 1

    started = time.monotonic()
    result = flow.run(state_dir=tmp_path, fail_fast=False)
    release.set()
    assert time.monotonic() - started < 5
    assert result["stuck"].status is Status.TIMED_OUT
    assert (
        result["stuck"].error is not None
        and "timed out after 0.2s" in result["stuck"].error.message
    )
    assert result["other"].status is Status.SUCCEEDED


def test_run_timeout_stops_and_a_later_run_resumes(tmp_path: Path) -> None:
    flow = Flow("runtimeout")
    done: list[str] = []

    @flow.step()
    def quick() -> None:
        done.append("quick")

    @flow.step(depends_on=["quick"])
    def slow() -> None:
        time.sleep(0.5)
        done.append("slow")

    @flow.step(depends_on=["slow"])
    def last() -> None:
        done.append("last")

    first = flow.run(state_dir=tmp_path, timeout=0.2, workers=2)
    assert first.status is RunStatus.TIMED_OUT
    assert first["quick"].status is Status.SUCCEEDED and first["last"].status is Status.PENDING
    time.sleep(0.5)
    second = flow.run(state_dir=tmp_path)
    assert second.ok and second["quick"].status is Status.CACHED
    assert done.count("quick") == 1 and done.count("last") == 1


def test_rerun_glob_reruns_matches_and_downstream(tmp_path: Path) -> None:
    result = flows.diamond.run(state_dir=tmp_path)
    assert result.ok
    again = flows.diamond.run(state_dir=tmp_path, rerun=["l*"])
    assert again["left"].reason == "--rerun" and again["join"].status is Status.SUCCEEDED
    assert again["right"].status is Status.CACHED and again["top"].status is Status.CACHED


def test_public_namespace_is_pinned() -> None:
    import types

    import flowkit

    public = {
        n
        for n, v in vars(flowkit).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert sorted(flowkit.__all__) == sorted(public | {"__version__"})


def test_async_steps_share_one_event_loop_and_run_concurrently(tmp_path: Path) -> None:
    import asyncio

    flow = Flow("asyncshare")
    loops: set[int] = set()

    def make(i: int) -> Any:
        async def wait_a_bit() -> int:
            loops.add(id(asyncio.get_running_loop()))
            await asyncio.sleep(0.2)
            return i

        return wait_a_bit

    for i in range(10):
        flow.step(name=f"a{i}")(make(i))
    started = time.monotonic()
    result = flow.run(state_dir=tmp_path, workers=10)
    elapsed = time.monotonic() - started
    assert result.ok and [result[f"a{i}"].output for i in range(10)] == list(range(10))
    assert len(loops) == 1
    assert elapsed < 1.5  # ten 0.2 s waits overlapped, not 2 s in a row


def test_async_step_past_its_timeout_is_cancelled(tmp_path: Path) -> None:
    import asyncio

    flow = Flow("asynccancel")
    cancelled = threading.Event()

    @flow.step(timeout=0.2)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    result = flow.run(state_dir=tmp_path)
    assert result["slow"].status is Status.TIMED_OUT
    assert result["slow"].error is not None and "cancelled" in result["slow"].error.message
    assert cancelled.wait(5)


def test_cache_ttl_expires_a_stored_result(tmp_path: Path) -> None:
    import orjson

    from flowkit.records import seal

    flow = Flow("ttl")
    calls = {"n": 0}

    @flow.step(cache_ttl=60)
    def fetch() -> int:
        calls["n"] += 1
        return calls["n"]

    flow.run(state_dir=tmp_path)
    assert flow.run(state_dir=tmp_path)["fetch"].status is Status.CACHED
    # age the stored result past its ttl
    journal = tmp_path / "ttl" / "ttl" / "journal.jsonl"
    lines = [orjson.loads(x) for x in journal.read_bytes().splitlines()]
    for rec in lines:
        del rec["crc"]  # re-sealed below, as if written an hour earlier
        if rec.get("ev") == "done":
            rec["end"] -= 3600
    journal.write_bytes(b"".join(seal(x) for x in lines))
    (tmp_path / "ttl" / "ttl" / "snapshot.json").unlink()
    result = flow.run(state_dir=tmp_path)
    assert result["fetch"].status is Status.SUCCEEDED
    assert result["fetch"].reason == "cache expired (cache_ttl=60s)" and calls["n"] == 2


class _UpperSerializer:
    """A custom serializer: stores text upper-cased with a marker, to prove it is used."""

    suffix = ".txt"

    def dumps(self, value: Any) -> bytes:
        return b"SER:" + repr(value).encode()

    def loads(self, data: bytes) -> Any:
        import ast

        assert data.startswith(b"SER:")
        return ast.literal_eval(data[4:].decode())


def test_custom_serializer_stores_and_restores_outputs(tmp_path: Path) -> None:
    flow = Flow("serial", serializer=_UpperSerializer())
    state = {"fail": True}

    @flow.step()
    def pair() -> tuple[int, int]:
        return (1, 2)

    @flow.step()
    def use(pair: tuple[int, int]) -> int:
        if state["fail"]:
            raise RuntimeError("crash")
        return sum(pair)

    flow.run(state_dir=tmp_path)
    store = flow.store(state_dir=tmp_path)
    stored = store.file_of(store.load().steps["pair"])
    assert stored is not None and stored.suffix == ".txt"
    assert stored.read_bytes() == b"SER:(1, 2)"
    state["fail"] = False
    result = flow.run(state_dir=tmp_path)
    assert result["pair"].status is Status.CACHED and result["use"].output == 3


def test_big_json_outputs_go_to_a_side_file_not_the_journal(tmp_path: Path) -> None:
    flow = Flow("bigjson")
    state = {"fail": True}

    @flow.step()
    def rows() -> list[dict[str, int]]:
        return [{"i": i, "sq": i * i} for i in range(20_000)]

    @flow.step()
    def total(rows: list[dict[str, int]]) -> int:
        if state["fail"]:
            raise RuntimeError("crash")
        return sum(r["sq"] for r in rows)

    flow.run(state_dir=tmp_path)
    run_dir = tmp_path / "bigjson" / "bigjson"
    store = flow.store(state_dir=tmp_path)
    stored = store.file_of(store.load().steps["rows"])
    assert stored is not None and stored.suffix == ".json"
    assert stored.stat().st_size > 100_000
    assert (run_dir / "journal.jsonl").stat().st_size < 10_000
    state["fail"] = False
    result = flow.run(state_dir=tmp_path)
    assert result["rows"].status is Status.CACHED
    assert result["total"].output == sum(i * i for i in range(20_000))


def test_a_run_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    import gc

    before = (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled())
    flows.diamond.run(state_dir=tmp_path)
    _two_branches("a1").run(state_dir=tmp_path / "failing")
    assert (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()) == before


def test_a_program_s_own_gc_freeze_is_left_alone(tmp_path: Path) -> None:
    import gc

    gc.freeze()
    try:
        assert gc.get_freeze_count() > 0
        flows.diamond.run(state_dir=tmp_path)
        assert gc.get_freeze_count() > 0  # not unfrozen by the run
    finally:
        gc.unfreeze()
