"""Command-line habits: shell completion loaded in a real bash, --json for scripts, examples in
--help, a bare ``flowkit``, and options a command would ignore refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_flowkit, run_flowkit_each

PIPELINE = """\
from flowkit import Flow
flow = Flow("demo")

@flow.step()
def load(day: str = "x") -> int:
    return 1

@flow.step(retries=1, backoff=0)
def shout(load: int) -> int:
    raise ValueError("no good")
"""


_flowkit = run_flowkit


@pytest.fixture
def ran(tmp_path: Path) -> Path:
    """A folder with the demo pipeline, run once (load succeeds, shout fails)."""
    (tmp_path / "p.py").write_text(PIPELINE)
    assert _flowkit(tmp_path, "run", "p.py:flow", "--plain").returncode == 1
    return tmp_path


def _complete(script: Path, *words: str) -> list[str]:
    """Completions bash offers for ``words`` (the last one being typed), via the function the
    script registered with ``complete``."""
    quoted = " ".join(f"'{w}'" for w in words)
    code = (
        f"source {script}\n"
        "fn=$(complete -p flowkit | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}\n'
        '"$fn" flowkit "${COMP_WORDS[-1]}" "${COMP_WORDS[-2]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bash = shutil.which("bash")
    assert bash is not None
    r = subprocess.run([bash, "--norc", "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion_script_completes_subcommands_and_options(tmp_path: Path) -> None:
    pytest.importorskip("shtab")
    r = _flowkit(tmp_path, "completion", "bash")
    assert r.returncode == 0, r.stderr
    script = tmp_path / "flowkit.bash"
    script.write_text(r.stdout)
    assert _complete(script, "flowkit", "sch") == ["schedule"]
    assert set(_complete(script, "flowkit", "r")) == {"run", "runs", "report"}
    assert _complete(script, "flowkit", "schedule", "p.py", "--cat") == ["--catchup"]
    assert _complete(script, "flowkit", "completion", "") == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_scripts_name_the_commands(tmp_path: Path, shell: str) -> None:
    pytest.importorskip("shtab")
    r = _flowkit(tmp_path, "completion", shell)
    assert r.returncode == 0 and "schedule" in r.stdout and "--catchup" in r.stdout


def test_status_json_lists_every_step_with_its_state(ran: Path) -> None:
    r = _flowkit(ran, "status", "p.py:flow", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["flow"], data["run_id"], data["status"]) == ("demo", "demo", "failed")
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["load"]["state"] == "succeeded" and steps["load"]["attempts"] == 1
    assert steps["shout"]["state"] == "failed" and steps["shout"]["attempts"] == 2
    assert "ValueError: no good" in steps["shout"]["detail"]
    assert isinstance(steps["load"]["duration_s"], float)


def test_runs_json_lists_each_run_with_params_and_counts(ran: Path) -> None:
    _flowkit(ran, "run", "p.py:flow", "--param", "day=mon")
    r = _flowkit(ran, "runs", "p.py:flow", "--json")
    runs = {x["run_id"]: x for x in json.loads(r.stdout)}
    assert len(runs) == 2
    mon = next(x for x in runs.values() if x["params"] == {"day": "mon"})
    assert mon["status"] == "failed" and mon["counts"] == {"failed": 1, "succeeded": 1}
    assert mon["started"] <= mon["last_active"]


def test_explain_json_gives_the_decision_reason_and_last_error(ran: Path) -> None:
    load_json, shout_json = run_flowkit_each(
        ran, ["explain", "p.py:flow", "load", "--json"], ["explain", "p.py:flow", "shout", "--json"]
    )
    load = json.loads(load_json.stdout)
    assert load == {
        "step": "load",
        "decision": "cached",
        "reason": load["reason"],
        "last_error": None,
    }
    shout = json.loads(shout_json.stdout)
    assert shout["decision"] == "run"
    assert "no good" in shout["last_error"]["message"]
    assert "ValueError" in shout["last_error"]["traceback"]


def test_graph_json_has_nodes_tiers_edges_and_statuses(ran: Path) -> None:
    plain_json, run_json, both = run_flowkit_each(
        ran,
        ["graph", "p.py:flow", "--json"],
        ["graph", "p.py:flow", "--run-id", "demo", "--json"],
        ["graph", "p.py:flow", "--json", "--format", "dot"],
    )
    plain = json.loads(plain_json.stdout)
    assert [(n["name"], n["tier"], n["upstream"]) for n in plain["nodes"]] == [
        ("load", 0, []),
        ("shout", 1, ["load"]),
    ]
    assert plain["edges"] == [["load", "shout"]]
    of_run = json.loads(run_json.stdout)
    assert [n["status"] for n in of_run["nodes"]] == ["succeeded", "failed"]
    assert both.returncode == 2 and "--json and --format dot: choose one" in both.stderr


def test_every_command_help_shows_examples(tmp_path: Path) -> None:
    commands = ("run", "schedule", "status", "explain", "runs", "clean", "graph", "logs", "config")
    helps = run_flowkit_each(tmp_path, *([c, "--help"] for c in commands))
    for cmd, r in zip(commands, helps, strict=True):
        assert r.returncode == 0 and "examples:\n  flowkit " + cmd in r.stdout, cmd


def test_a_bare_flowkit_prints_the_help_and_exits_2(tmp_path: Path) -> None:
    r = _flowkit(tmp_path)
    assert r.returncode == 2
    assert "usage: flowkit" in r.stderr and "schedule" in r.stderr and "completion" in r.stderr
    assert r.stderr.rstrip().endswith(
        "flowkit: error: a command is required: flowkit COMMAND --help"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "p.py:flow", "--param", "day=1"], "it takes no --param or --run-id"),
        (["runs", "p.py:flow", "--run-id", "x"], "it takes no --param or --run-id"),
        (
            ["schedule", "p.py:flow", "--cron", "0 2 * * *", "--run-id", "x"],
            "does not take --run-id",
        ),
        (["clean", "p.py:flow", "--all", "--param", "day=1"], "--all chooses runs of every"),
        (["clean", "p.py:flow", "--older-than", "3d", "--run-id", "x"], "drop --older-than"),
        (["status", "p.py:flow", "--step", "load", "--json"], "--json shows every step"),
        (["run", "p.py:flow", "--dry-run", "--output", "o.json"], "--output would write nothing"),
        (
            ["schedule", "p.py:flow", "--cron", "0 2 * * *", "--print-crontab", "--run-now"],
            "--print-crontab prints a unit and runs nothing",
        ),
    ],
    ids=[
        "runs-param",
        "runs-run-id",
        "schedule-run-id",
        "clean-all",
        "clean-older",
        "status",
        "dry-run-output",
        "print-run-now",
    ],
)
def test_options_a_command_would_ignore_are_refused(
    ran: Path, args: list[str], message: str
) -> None:
    before = sorted(p.name for p in (ran / ".flowkit" / "demo").iterdir())
    r = _flowkit(ran, *args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert sorted(p.name for p in (ran / ".flowkit" / "demo").iterdir()) == before
