"""Cost attribution: rates turn each step's CPU time and memory × wall time into a cost, per step
and in total, in the result, report.json and the text and HTML reports; without rates, nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cliflows import flowkit
from conftest import flowkit_env, run_flowkit_each

from flowkit import Flow, UsageError
from flowkit.cost import CostRates

BURN = """
import sys
import time

from flowkit import Flow

flow = Flow("costly")


@flow.step()
def burn() -> int:
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    return 1


CODE = "x = bytearray(80_000_000); import time; time.sleep(0.3)"
flow.shell("hold_memory", [sys.executable, "-c", CODE])
"""


def journal_done(state: Path) -> dict[str, dict[str, float]]:
    (path,) = state.rglob("journal.jsonl")
    records = [json.loads(x) for x in path.read_text().splitlines() if x]
    return {r["step"]: r for r in records if r.get("ev") == "done" and "start" in r}


def costly_flow() -> Flow:
    flow = Flow("costly")

    @flow.step()
    def burn() -> int:
        t = time.process_time()
        while time.process_time() - t < 0.3:
            pass
        return 1

    code = "x = bytearray(80_000_000); import time; time.sleep(0.3)"
    flow.shell("hold_memory", [sys.executable, "-c", code])
    return flow


def test_rates_price_cpu_time_and_memory_held_per_step_and_in_total(tmp_path: Path) -> None:
    flow = costly_flow()
    result = flow.run(state_dir=tmp_path, cost_rates="cpu_hour=0.5,gb_hour=2")
    assert result.ok
    done = journal_done(tmp_path)
    burn, mem = done["burn"], done["hold_memory"]
    assert burn["cpu"] >= 0.29
    assert result["burn"].cost == pytest.approx(burn["cpu"] / 3600 * 0.5, rel=1e-4)
    assert mem["peak_rss"] >= 80_000_000  # measured for the command flowkit waited for
    expected = (
        mem["cpu"] / 3600 * 0.5 + mem["peak_rss"] / 1e9 * (mem["end"] - mem["start"]) / 3600 * 2
    )
    assert result["hold_memory"].cost == pytest.approx(expected, rel=1e-4)
    assert result.cost == pytest.approx(result["burn"].cost + expected, rel=1e-4)
    report = json.loads(next(tmp_path.rglob("report.json")).read_text())
    assert report["cost"]["rates"] == {"cpu_hour": 0.5, "gb_hour": 2.0}
    assert report["cost"]["total"] == pytest.approx(result.cost, abs=1e-8)
    costs = {s["name"]: s["cost"] for s in report["steps"]}
    assert costs["burn"] == pytest.approx(result["burn"].cost, abs=1e-8)
    assert "cost: " in result.summary() and "cpu_hour=0.5, gb_hour=2" in result.summary()
    again = flow.run(state_dir=tmp_path, cost_rates=CostRates(cpu_hour=0.5))
    assert again.cost == 0.0  # cached steps cost nothing in this run


def test_without_rates_no_cost_anywhere(tmp_path: Path) -> None:
    result = costly_flow().run(state_dir=tmp_path)
    assert result.cost is None and result["burn"].cost is None
    report = json.loads(next(tmp_path.rglob("report.json")).read_text())
    assert "cost" not in report and all("cost" not in s for s in report["steps"])
    assert "cost:" not in result.summary()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpu=1", "NAME one of cpu_hour, gb_hour"),
        ("cpu_hour", "expected NAME=PRICE"),
        ("cpu_hour=cheap", "cpu_hour='cheap' is not a number"),
        ("gb_hour=-1", "gb_hour must be a number >= 0"),
        (" , ", "--cost-rate needs at least one rate"),
    ],
)
def test_bad_rates_are_refused_naming_the_rate(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=r"cost rate|--cost-rate") as info:
        CostRates.parse(text)
    assert message in str(info.value)


def test_cost_from_the_command_line_in_the_run_summary_and_the_reports(tmp_path: Path) -> None:
    (tmp_path / "costly.py").write_text(BURN)
    rate = ["--cost-rate", "cpu_hour=36,gb_hour=1"]
    run = flowkit("run", "costly:flow", *rate, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "cost: " in run.stdout and "(cpu_hour=36, gb_hour=1)" in run.stdout
    text, priced, plain, unpriced = run_flowkit_each(
        tmp_path,
        ["report", "costly:flow", *rate],
        ["report", "costly:flow", *rate, "--html", "priced.html"],
        ["report", "costly:flow"],
        ["report", "costly:flow", "--html", "unpriced.html"],
    )
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("  cost: "))
    assert float(line.split()[1]) >= 0.29 * 36 / 3600
    assert "costliest: burn (" in text.stdout
    assert priced.returncode == unpriced.returncode == 0, priced.stderr + unpriced.stderr
    page = (tmp_path / "priced.html").read_text()
    assert "<th>Cost</th>" in page and 'id="cost"' in page and 'class="num cost"' in page
    assert "cost:" not in plain.stdout and "costliest" not in plain.stdout
    assert "<th>Cost</th>" not in (tmp_path / "unpriced.html").read_text()


def test_a_bad_rate_on_the_command_line_exits_2_before_running(tmp_path: Path) -> None:
    (tmp_path / "costly.py").write_text(BURN)
    proc = flowkit("run", "costly:flow", "--cost-rate", "cpu_hour=x", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--cost-rate 'cpu_hour=x': cpu_hour='x' is not a number" in proc.stderr
    assert not (tmp_path / ".flowkit").exists()


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        cwd=cwd,
        env=flowkit_env(PYTHONDONTWRITEBYTECODE="1", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rates_from_the_environment_apply_when_no_flag_is_given(tmp_path: Path) -> None:
    (tmp_path / "costly.py").write_text(BURN)
    env = {"FLOWKIT_COST_RATE": "cpu_hour=36"}
    run = cli("run", "costly:flow", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert "(cpu_hour=36, gb_hour=0)" in run.stdout
    flag = cli("report", "costly:flow", "--cost-rate", "gb_hour=1", cwd=tmp_path, env=env)
    assert "(cpu_hour=0, gb_hour=1)" in flag.stdout  # the flag wins
    bad = cli("run", "costly:flow", cwd=tmp_path, env={"FLOWKIT_COST_RATE": "cpu=1"})
    assert bad.returncode == 2 and "FLOWKIT_COST_RATE 'cpu=1'" in bad.stderr
