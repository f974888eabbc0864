"""Steps sent to worker processes: factory-made steps travel by value (cloudpickle), and a step
that cannot be sent at all is refused before the run starts, naming it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cliflows import flowkit

from flowkit import Flow, UnpicklableStepError, step

FACTORY_PIPELINE = """
import os

from flowkit import Flow, step

flow = Flow("factory")


def make_scaler(k: int):
    def scale(n: int = 5) -> dict:
        return {"value": n * k, "pid": os.getpid()}

    return scale


for k in (2, 3):
    flow.add(step(name=f"times_{k}")(make_scaler(k)))
"""


def make_step(k: int) -> Callable[[], dict[str, int]]:
    def made() -> dict[str, int]:
        return {"value": 10 * k, "pid": os.getpid()}

    return made


def test_factory_made_steps_run_on_the_process_executor(tmp_path: Path) -> None:
    flow = Flow("made")
    for k in (1, 2):
        flow.add(step(name=f"made_{k}")(make_step(k)))
    result = flow.run(state_dir=tmp_path, executor="process", workers=2)
    assert result.ok, result.summary()
    assert result["made_2"].output["value"] == 20
    assert result["made_1"].output["pid"] != os.getpid()  # really in another process


def test_factory_made_steps_run_under_process_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "factory.py").write_text(FACTORY_PIPELINE)
    proc = flowkit("run", "factory:flow", "--executor", "process", "-w", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 succeeded" in proc.stdout


def test_a_step_that_cannot_be_pickled_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    lock = threading.Lock()

    def locked() -> None:
        with lock:
            pass

    flow = Flow("locked")
    flow.add(step(name="holds_a_lock")(locked))
    with pytest.raises(UnpicklableStepError, match="step 'holds_a_lock' cannot be sent") as info:
        flow.run(state_dir=tmp_path, executor="process", workers=2)
    assert info.value.step == "holds_a_lock" and "--executor thread" in str(info.value)
    assert not list(tmp_path.rglob("journal.jsonl"))
    assert flow.run(state_dir=tmp_path, executor="thread", workers=2).ok  # fine in threads
