"""Project settings: [tool.flowkit] in pyproject.toml and FLOWKIT_* variables, below flags;
``flowkit config`` says where each value came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_flowkit, run_flowkit_each

from flowkit.config import ConfigError, resolve

PIPELINE = """\
import pathlib, threading
from flowkit import Flow
flow = Flow("where")

@flow.step()
def where() -> str:
    name = threading.current_thread().name
    pathlib.Path(__file__).with_name("thread.txt").write_text(name)
    return name
"""


def _project(tmp_path: Path, table: str) -> Path:
    """A project with [tool.flowkit] ``table`` and the pipeline in a subfolder (returned)."""
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "p"\n\n[tool.flowkit]\n{table}')
    sub = tmp_path / "jobs"
    sub.mkdir()
    (sub / "p.py").write_text(PIPELINE)
    return sub


def _thread(sub: Path) -> str:
    """The thread the step last ran in (MainThread: 1 worker, inline)."""
    return (sub / "thread.txt").read_text()


_flowkit = run_flowkit


def test_pyproject_settings_apply_to_runs_found_from_a_subfolder(tmp_path: Path) -> None:
    sub = _project(tmp_path, 'state_dir = "state"\nworkers = 2\n')
    r = _flowkit(sub, "run", "p.py:flow", "--plain")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "state" / "where").is_dir()  # relative to the pyproject.toml
    assert not (sub / ".flowkit").exists()
    assert _thread(sub) != "MainThread"  # 2 workers: a thread executor
    status = _flowkit(sub, "status", "p.py:flow", "--json")
    assert json.loads(status.stdout)["status"] == "succeeded"  # status reads the same folder


def test_a_flag_beats_the_environment_which_beats_pyproject(tmp_path: Path) -> None:
    sub = _project(tmp_path, "workers = 2\n")
    _flowkit(sub, "run", "p.py:flow", "--fresh")
    assert _thread(sub) != "MainThread"
    _flowkit(sub, "run", "p.py:flow", "--fresh", "-w", "1")
    assert _thread(sub) == "MainThread"
    _flowkit(sub, "run", "p.py:flow", "--fresh", FLOWKIT_WORKERS="1")
    assert _thread(sub) == "MainThread"
    got = resolve({"workers": 3}, cwd=sub, environ={"FLOWKIT_WORKERS": "1"})
    assert (got["workers"].value, got["workers"].source) == (3, "flag --workers")
    got = resolve({}, cwd=sub, environ={"FLOWKIT_WORKERS": "1"})
    assert (got["workers"].value, got["workers"].source) == (1, "env FLOWKIT_WORKERS")
    got = resolve({}, cwd=sub, environ={})
    assert got["workers"].value == 2 and got["workers"].source.startswith("pyproject.toml ")
    assert got["durability"].value == "flush" and got["durability"].source == "default"


def test_flowkit_config_prints_each_value_and_its_source(tmp_path: Path) -> None:
    sub = _project(tmp_path, 'durability = "fsync"\nnotify = ["webhook:http://127.0.0.1:9/h"]\n')
    r, plain = run_flowkit_each(sub, ["config", "--json"], ["config"], FLOWKIT_EXECUTOR="thread")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["durability"] == {
        "value": "fsync",
        "source": f"pyproject.toml {tmp_path / 'pyproject.toml'}",
    }
    assert data["executor"] == {"value": "thread", "source": "env FLOWKIT_EXECUTOR"}
    assert data["notify"]["value"] == ["webhook:http://127.0.0.1:9/h"]
    assert data["workers"] == {"value": 1, "source": "default"}
    text = plain.stdout.splitlines()
    assert text[0].split() == ["SETTING", "VALUE", "SOURCE"]
    assert any(line.split()[:3] == ["durability", "fsync", "pyproject.toml"] for line in text)


def test_notify_on_and_notify_timeout_come_from_pyproject(tmp_path: Path) -> None:
    sub = _project(
        tmp_path,
        'notify = ["webhook:http://127.0.0.1:9/h"]\nnotify_on = ["succeeded"]\n'
        "notify_timeout = 0.5\n",
    )
    data = json.loads(_flowkit(sub, "config", "--json").stdout)
    where = f"pyproject.toml {tmp_path / 'pyproject.toml'}"
    assert data["notify_on"] == {"value": ["succeeded"], "source": where}
    assert data["notify_timeout"] == {"value": 0.5, "source": where}
    got = resolve({}, cwd=sub, environ={"FLOWKIT_NOTIFY_ON": "failed,always"})
    assert got["notify_on"].value == ["failed", "always"]
    assert got["notify_on"].source == "env FLOWKIT_NOTIFY_ON"
    assert resolve({}, cwd=tmp_path / "jobs", environ={})["notify_timeout"].value == 0.5
    # a successful run alerts only because notify_on says so; the closed port fails it fast
    r = _flowkit(sub, "run", "p.py:flow", "--plain")
    assert r.returncode == 0, r.stderr
    report = _flowkit(sub, "report", "p.py:flow").stdout
    assert "alert webhook (" in report and "to http://127.0.0.1:9/" in report
    assert "NOT delivered after 1 attempt(s)" in report


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('notify_on = ["sometimes"]\n', "'sometimes' is not a run outcome; use succeeded"),
        ("notify_timeout = 0\n", "notify_timeout: expected a number of seconds > 0, got 0"),
    ],
    ids=["notify-on", "notify-timeout"],
)
def test_bad_notify_settings_name_the_key(tmp_path: Path, table: str, message: str) -> None:
    sub = _project(tmp_path, table)
    r = _flowkit(sub, "config")
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_an_unknown_pyproject_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    sub = _project(tmp_path, "worker = 4\n")
    for args in (("config",), ("run", "p.py:flow")):
        r = _flowkit(sub, *args)
        assert r.returncode == 2
        assert "[tool.flowkit] has an unknown key 'worker'. Did you mean 'workers'?" in r.stderr
    assert not (sub / ".flowkit").exists()


@pytest.mark.parametrize(
    ("table", "env", "message"),
    [
        ("workers = 0\n", {}, "[tool.flowkit] workers: workers must be a whole number >= 1"),
        ('durability = "always"\n', {}, "'always' is not one of flush, fsync"),
        ("", {"FLOWKIT_WORKERS": "many"}, "$FLOWKIT_WORKERS: workers must be a whole number"),
        ("", {"FLOWKIT_EXECUTOR": "gpu"}, "$FLOWKIT_EXECUTOR: 'gpu' is not one of"),
    ],
    ids=["zero-workers", "bad-durability", "env-workers", "env-executor"],
)
def test_bad_values_name_where_they_were_set(
    tmp_path: Path, table: str, env: dict[str, str], message: str
) -> None:
    sub = _project(tmp_path, table)
    r = _flowkit(sub, "run", "p.py:flow", **env)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    with pytest.raises(ConfigError):
        resolve({}, cwd=sub, environ=env)


def test_a_broken_pyproject_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.flowkit\nworkers = 2\n")
    r = _flowkit(tmp_path, "config")
    assert r.returncode == 2 and f"{tmp_path / 'pyproject.toml'}: not valid TOML" in r.stderr


def test_the_scheduler_takes_its_run_options_from_pyproject_too(tmp_path: Path) -> None:
    sub = _project(tmp_path, 'state_dir = "state"\nworkers = 2\ndurability = "fsync"\n')
    r = _flowkit(
        sub, "schedule", "p.py:flow", "--cron", "0 2 * * *", "--run-now", "--max-runs", "1"
    )
    assert r.returncode == 0, r.stderr
    assert _thread(sub) != "MainThread"
    assert any((tmp_path / "state" / "where").iterdir())
    unit = _flowkit(sub, "schedule", "p.py:flow", "--cron", "0 2 * * *", "--print-systemd").stdout
    assert f"--state-dir {tmp_path / 'state'} --workers 2 --durability fsync" in unit


def test_cost_rates_from_pyproject_price_the_run_and_a_bad_rate_names_the_key(
    tmp_path: Path,
) -> None:
    sub = _project(tmp_path, "cost_rate = {cpu_hour = 3600.0, gb_hour = 0.0}\n")
    r = _flowkit(sub, "run", "p.py:flow", "--plain")
    assert r.returncode == 0, r.stderr
    (report,) = (sub / ".flowkit").glob("where/*/report.json")
    assert json.loads(report.read_text())["cost"]["rates"] == {"cpu_hour": 3600.0, "gb_hour": 0.0}
    got = resolve({}, cwd=sub, environ={"FLOWKIT_COST_RATE": "gb_hour=1"})
    assert got["cost_rate"].value == "gb_hour=1" and got["cost_rate"].source.startswith("env")
    (tmp_path / "bad").mkdir()
    bad = _project(tmp_path / "bad", 'cost_rate = "cpu_hours=1"\n')
    r = _flowkit(bad, "run", "p.py:flow")
    assert r.returncode == 2 and "[tool.flowkit] cost_rate" in r.stderr, r.stderr
    assert "cpu_hour" in r.stderr
