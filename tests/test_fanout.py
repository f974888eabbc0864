"""Fan-out (matrix, map_over), pools and resource hints."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flowkit import Flow, FlowDefinitionError, InvalidStepOptionError, Status


def test_matrix_runs_one_instance_per_combination_and_gathers_in_order(tmp_path: Path) -> None:
    flow = Flow("matrix")

    @flow.step(matrix={"batch": range(3), "mode": ["a", "b"]})
    def work(batch: int, mode: str) -> str:
        return f"{mode}{batch}"

    @flow.step()
    def total(work: list[str]) -> str:
        return "-".join(work)

    result = flow.run(state_dir=tmp_path, workers=3)
    assert result.ok
    assert result["total"].output == "a0-b0-a1-b1-a2-b2"
    assert result["work[batch=1,mode=b]"].status is Status.SUCCEEDED
    again = flow.run(state_dir=tmp_path)
    assert again["work[batch=2,mode=a]"].status is Status.CACHED
    assert again["total"].status is Status.CACHED


def test_map_over_resumes_only_unfinished_items(tmp_path: Path) -> None:
    flow = Flow("mapped")
    calls: list[int] = []
    broken = {7}

    @flow.step()
    def items() -> list[int]:
        return list(range(10))

    @flow.step(map_over="items")
    def square(items: int) -> int:
        calls.append(items)
        if items in broken:
            raise RuntimeError(f"item {items} broke")
        return items * items

    @flow.step()
    def add(square: list[int]) -> int:
        return sum(square)

    first = flow.run(state_dir=tmp_path, fail_fast=False)
    assert first["square[7]"].status is Status.FAILED
    assert first["square"].status is Status.FAILED
    assert first["square"].error is not None and "square[7]" in first["square"].error.message
    assert first["add"].status is Status.UPSTREAM_FAILED
    broken.clear()
    calls.clear()
    second = flow.run(state_dir=tmp_path)
    assert calls == [7]
    assert second["add"].output == sum(i * i for i in range(10))


def test_map_over_a_non_list_fails_with_a_clear_error(tmp_path: Path) -> None:
    flow = Flow("badmap")

    @flow.step()
    def items() -> dict[str, int]:
        return {"a": 1}

    @flow.step(map_over="items")
    def each(items: int) -> int:
        return items

    result = flow.run(state_dir=tmp_path)
    err = result["each"].error
    assert err is not None and "needs a list" in err.message and "dict" in err.message


def test_map_over_must_name_a_parameter() -> None:
    with pytest.raises(InvalidStepOptionError, match="map_over"):

        @Flow("x").step(map_over="nope")
        def each(items: int) -> int:
            return items


def test_pool_caps_concurrent_steps(tmp_path: Path) -> None:
    flow = Flow("pools", pools={"db": 2})
    lock = threading.Lock()
    active = {"now": 0, "max": 0}

    def body() -> None:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.05)
        with lock:
            active["now"] -= 1

    for i in range(8):
        flow.step(name=f"q{i}", pool="db")(body)
    result = flow.run(state_dir=tmp_path, workers=8)
    assert result.ok and active["max"] == 2


def test_unknown_pool_is_a_definition_error_with_a_suggestion() -> None:
    flow = Flow("pools", pools={"db": 2})

    @flow.step(pool="dbs")
    def q() -> None: ...

    with pytest.raises(FlowDefinitionError, match="Did you mean 'db'"):
        flow.graph()


def test_step_needing_more_cpus_than_the_machine_is_rejected() -> None:
    flow = Flow("big")

    @flow.step(cpus=10_000)
    def huge() -> None: ...

    with pytest.raises(FlowDefinitionError, match="cpus=10000, but this machine"):
        flow.run()


def test_memory_hint_parses_sizes_and_rejects_garbage() -> None:
    flow = Flow("mem")

    @flow.step(memory="1MB")
    def small() -> None: ...

    assert flow.steps["small"].memory == 1_000_000
    with pytest.raises(InvalidStepOptionError, match="memory"):

        @flow.step(memory="lots")
        def bad() -> None: ...


def test_cpu_hints_keep_local_executors_from_oversubscribing(tmp_path: Path) -> None:
    import os

    flow = Flow("cpus")
    lock = threading.Lock()
    active = {"now": 0, "max": 0}
    cpus = os.cpu_count() or 1

    def body() -> None:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.03)
        with lock:
            active["now"] -= 1

    for i in range(6):
        flow.step(name=f"c{i}", cpus=cpus)(body)
    result = flow.run(state_dir=tmp_path, workers=6)
    assert result.ok and active["max"] == 1


def test_status_lists_fan_out_instances_under_their_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowkit.cli import main

    pipeline = tmp_path / "fan_pipeline.py"
    pipeline.write_text(
        "from flowkit import Flow\n"
        "flow = Flow('fan')\n"
        "@flow.step(matrix={'k': [1, 2]})\n"
        "def part(k: int) -> int:\n"
        "    if k == 2:\n"
        "        raise ValueError('k=2 is broken')\n"
        "    return k\n"
    )
    target = f"{pipeline}:flow"
    state = str(tmp_path / "state")
    assert main(["run", target, "--state-dir", state, "--plain", "--continue-on-error"]) == 1
    capsys.readouterr()
    assert main(["status", target, "--state-dir", state]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert rows[0].split()[:2] == ["part", "failed"]
    assert rows[1].split()[:2] == ["part[k=1]", "succeeded"]
    assert rows[2].split()[:2] == ["part[k=2]", "failed"] and "k=2 is broken" in rows[2]
