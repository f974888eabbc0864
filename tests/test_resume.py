"""Crash and resume, with real `python -m flowkit run` subprocesses.

The flows live in tests/crashflows.py. Each step appends its own name to ``$CRASHFLOWS_DIR/counter``
when it executes, so every "ran once" / "ran again" below is counted by the steps themselves.
A step crashes (``os._exit``) or blocks until SIGKILLed when ``CRASHFLOWS_CRASH`` /
``CRASHFLOWS_BLOCK`` names it; the resume is the same command without that variable.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crashflows
import orjson
import pytest
from conftest import PYTHON, flowkit_env

from flowkit.records import seal
from flowkit.store import FORMAT, RunStore

TIMEOUT = 60
STEP_LINE = re.compile(r"^\[([A-Z ]+)\]\s+(\S+)", re.MULTILINE)
CHAIN_FINISHED_BEFORE_COMBINE = ("load", "double", "triple")


# --- helpers --------------------------------------------------------------------------------------


def _env(work: Path, **extra: str) -> dict[str, str]:
    env = flowkit_env(CRASHFLOWS_DIR=str(work))
    env.pop("CRASHFLOWS_CRASH", None)
    env.pop("CRASHFLOWS_BLOCK", None)
    env.update(extra)
    return env


def _flowkit(work: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m flowkit ARGS`` in ``work`` (which holds .flowkit/ and the counter file)."""
    return subprocess.run(
        [PYTHON, "-m", "flowkit", *args],
        cwd=work,
        env=_env(work, **extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _spawn(work: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "flowkit", *args],
        cwd=work,
        env=_env(work, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _labels(stdout: str) -> dict[str, str]:
    """Step name -> console label (CACHED, SUCCEEDED, ...) of one `flowkit run` output."""
    return {name: label.strip() for label, name in STEP_LINE.findall(stdout)}


def _executions(work: Path) -> list[str]:
    path = work / crashflows.COUNTER
    return path.read_text().split() if path.exists() else []


def _state_dir(work: Path, flow: Any, run_id: str | None = None) -> Path:
    return work / ".flowkit" / flow.name / (run_id or flow.run_id())


def _object(work: Path, flow: Any, step: str) -> Path:
    """The object holding ``step``'s output in the run's latest state."""
    store = RunStore(work / ".flowkit", flow.name, flow.run_id())
    path = store.file_of(store.load().steps[step])
    assert path is not None and path.parent.parent.name == "objects", path
    return path


def _records(journal: Path) -> list[dict[str, Any]]:
    """The journal's records; a torn last line (no newline) is ignored, as flowkit does."""
    lines = journal.read_bytes().split(b"\n")
    out = []
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise
    return out


def _done(journal: Path) -> dict[str, dict[str, Any]]:
    """The last successful `done` record of every step in the journal."""
    return {
        r["step"]: r
        for r in _records(journal)
        if r.get("ev") == "done" and r.get("status") == "succeeded"
    }


def _wait_for(predicate: Any, proc: subprocess.Popen[str], what: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _sigkill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL


def _crash_chain(work: Path, *extra_args: str) -> None:
    """Run `chain` with `combine` calling os._exit: load, double and triple are journaled."""
    first = _flowkit(work, "run", "crashflows:chain", *extra_args, CRASHFLOWS_CRASH="combine")
    assert first.returncode == crashflows.CRASH_CODE, first.stdout + first.stderr
    assert set(_done(_state_dir(work, crashflows.chain) / "journal.jsonl")) == set(
        CHAIN_FINISHED_BEFORE_COMBINE
    )


def _assert_chain_resumed(
    work: Path, resumed: subprocess.CompletedProcess[str], combine_runs: int = 2
) -> None:
    """The resume restored load/double/triple, ran combine again and report once."""
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    labels = _labels(resumed.stdout)
    assert labels == {
        "load": "CACHED",
        "double": "CACHED",
        "triple": "CACHED",
        "combine": "SUCCEEDED",
        "report": "SUCCEEDED",
    }, resumed.stdout
    # combine ran in each interrupted process and again in the resume; the rest exactly once
    assert Counter(_executions(work)) == {
        "load": 1,
        "double": 1,
        "triple": 1,
        "combine": combine_runs,
        "report": 1,
    }
    # report received the restored outputs of combine's upstreams and of load
    assert (work / "report.txt").read_text() == crashflows.CHAIN_REPORT


# --- 1, 2: a crash, a SIGKILL -------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "3"])
def test_resume_after_os_exit_restores_finished_steps_without_running_them(
    tmp_path: Path, workers: str
) -> None:
    _crash_chain(tmp_path, "--workers", workers)
    assert Counter(_executions(tmp_path)) == {"load": 1, "double": 1, "triple": 1, "combine": 1}

    resumed = _flowkit(tmp_path, "run", "crashflows:chain", "--workers", workers)

    _assert_chain_resumed(tmp_path, resumed)
    assert "resuming run chain" in resumed.stdout


def test_resume_after_sigkill_during_a_step_runs_each_finished_step_exactly_once(
    tmp_path: Path,
) -> None:
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    proc = _spawn(tmp_path, "run", "crashflows:chain", "--workers", "2", CRASHFLOWS_BLOCK="combine")
    _wait_for(lambda: "combine" in _executions(tmp_path), proc, "combine started")
    # combine only starts once its upstreams' completions are in the journal
    assert set(_done(journal)) == set(CHAIN_FINISHED_BEFORE_COMBINE)
    _sigkill(proc)

    resumed = _flowkit(tmp_path, "run", "crashflows:chain", "--workers", "2")

    _assert_chain_resumed(tmp_path, resumed)


# --- 3, 4: re-running a finished run -------------------------------------------------------------


def test_rerun_of_a_finished_run_executes_nothing_and_reports_every_step_cached(
    tmp_path: Path,
) -> None:
    first = _flowkit(tmp_path, "run", "crashflows:chain")
    assert first.returncode == 0, first.stdout + first.stderr
    assert Counter(_executions(tmp_path)) == dict.fromkeys(crashflows.CHAIN_STEPS, 1)

    for _ in range(2):  # the second re-run starts from the snapshot the first re-run wrote
        again = _flowkit(tmp_path, "run", "crashflows:chain")
        assert again.returncode == 0, again.stdout + again.stderr
        assert _labels(again.stdout) == dict.fromkeys(crashflows.CHAIN_STEPS, "CACHED")
        assert len(STEP_LINE.findall(again.stdout)) == len(crashflows.CHAIN_STEPS)
        assert Counter(_executions(tmp_path)) == dict.fromkeys(crashflows.CHAIN_STEPS, 1)
    assert (tmp_path / "report.txt").read_text() == crashflows.CHAIN_REPORT


def test_an_all_cached_resume_adds_three_journal_lines_not_one_per_step(tmp_path: Path) -> None:
    first = _flowkit(tmp_path, "run", "crashflows:chain")
    assert first.returncode == 0, first.stdout + first.stderr
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    before = journal.read_bytes().splitlines()

    again = _flowkit(tmp_path, "run", "crashflows:chain")

    assert again.returncode == 0, again.stdout + again.stderr
    added = [json.loads(line) for line in journal.read_bytes().splitlines()[len(before) :]]
    assert [r["ev"] for r in added] == ["run", "cached", "end"]
    assert sorted(added[1]["steps"]) == sorted(crashflows.CHAIN_STEPS)
    status = _flowkit(tmp_path, "status", "crashflows:chain")
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[2:]}
    assert rows == dict.fromkeys(crashflows.CHAIN_STEPS, "cached")


def test_fresh_runs_every_step_again_and_moves_the_old_state_to_previous(tmp_path: Path) -> None:
    state = _state_dir(tmp_path, crashflows.chain)
    first = _flowkit(tmp_path, "run", "crashflows:chain")
    assert first.returncode == 0, first.stdout + first.stderr
    old_journal = (state / "journal.jsonl").read_bytes()
    old_snapshot = (state / "snapshot.json").read_bytes()

    fresh = _flowkit(tmp_path, "run", "crashflows:chain", "--fresh")

    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert _labels(fresh.stdout) == dict.fromkeys(crashflows.CHAIN_STEPS, "SUCCEEDED")
    assert Counter(_executions(tmp_path)) == dict.fromkeys(crashflows.CHAIN_STEPS, 2)
    previous = state.with_name(state.name + ".previous")
    assert (previous / "journal.jsonl").read_bytes() == old_journal
    assert (previous / "snapshot.json").read_bytes() == old_snapshot
    headers = [r for r in _records(state / "journal.jsonl") if r["ev"] == "run"]
    assert len(headers) == 1, "the new journal should hold only the fresh run"
    assert (tmp_path / "report.txt").read_text() == crashflows.CHAIN_REPORT


# --- 5, 6: what is restored ---------------------------------------------------------------------


def test_ctx_writes_of_finished_steps_are_restored_for_a_downstream_step(tmp_path: Path) -> None:
    first = _flowkit(tmp_path, "run", "crashflows:ctxflow", CRASHFLOWS_CRASH="consume")
    assert first.returncode == crashflows.CRASH_CODE, first.stdout + first.stderr

    resumed = _flowkit(tmp_path, "run", "crashflows:ctxflow")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _labels(resumed.stdout) == {
        "remember": "CACHED",
        "count": "CACHED",
        "consume": "SUCCEEDED",
    }
    assert Counter(_executions(tmp_path)) == {"remember": 1, "count": 1, "consume": 2}
    assert (tmp_path / "ctx.txt").read_text() == crashflows.CTX_REPORT


def test_outputs_json_cannot_hold_are_restored_with_their_exact_types(tmp_path: Path) -> None:
    state = _state_dir(tmp_path, crashflows.typed)
    first = _flowkit(tmp_path, "run", "crashflows:typed", CRASHFLOWS_CRASH="check")
    assert first.returncode == crashflows.CRASH_CODE, first.stdout + first.stderr
    done = _done(state / "journal.jsonl")
    for name in crashflows.TYPES_PRODUCERS:  # stored as objects, not inline JSON
        assert "obj" in done[name] and "out" not in done[name], done[name]
        assert _object(tmp_path, crashflows.typed, name).is_file()

    resumed = _flowkit(tmp_path, "run", "crashflows:typed")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    labels = _labels(resumed.stdout)
    assert labels == {**dict.fromkeys(crashflows.TYPES_PRODUCERS, "CACHED"), "check": "SUCCEEDED"}
    assert Counter(_executions(tmp_path)) == {
        **dict.fromkeys(crashflows.TYPES_PRODUCERS, 1),
        "check": 2,
    }
    assert (tmp_path / "types.txt").read_text() == crashflows.TYPES_REPORT


def _damage(side_file: Path, how: str) -> None:
    if how == "delete":
        side_file.unlink()
    else:
        side_file.write_bytes(side_file.read_bytes() + b"\x00")


@pytest.mark.parametrize(
    ("how", "step", "says"),
    [("delete", "make_set", "is missing"), ("alter", "make_obj", "was altered")],
)
def test_damaged_side_file_makes_its_step_run_again_with_the_file_named(
    tmp_path: Path, how: str, step: str, says: str
) -> None:
    first = _flowkit(tmp_path, "run", "crashflows:typed")
    assert first.returncode == 0, first.stdout + first.stderr
    side_file = _object(tmp_path, crashflows.typed, step)
    _damage(side_file, how)

    again = _flowkit(tmp_path, "run", "crashflows:typed", "--verbose")

    assert again.returncode == 0, again.stdout + again.stderr
    assert _labels(again.stdout)[step] == "SUCCEEDED", again.stdout
    started = [line for line in again.stdout.splitlines() if line.startswith("[STARTED]")]
    assert len(started) == 1 and step in started[0], again.stdout
    assert side_file.name in started[0] and says in started[0], started[0]
    # only the damaged step ran again: it returned an equal value, so `check` stays cached
    assert Counter(_executions(tmp_path)) == {
        **dict.fromkeys(crashflows.TYPES_STEPS, 1),
        step: 2,
    }
    assert side_file.is_file()
    assert (tmp_path / "types.txt").read_text() == crashflows.TYPES_REPORT


def test_default_run_output_says_which_side_file_forced_a_rerun(tmp_path: Path) -> None:
    first = _flowkit(tmp_path, "run", "crashflows:typed")
    assert first.returncode == 0, first.stdout + first.stderr
    lost = _object(tmp_path, crashflows.typed, "make_set")
    lost.unlink()

    again = _flowkit(tmp_path, "run", "crashflows:typed")

    assert again.returncode == 0, again.stdout + again.stderr
    assert _labels(again.stdout)["make_set"] == "SUCCEEDED"
    # a stored result was thrown away: the plain `flowkit run` output should say why
    assert lost.name in again.stdout + again.stderr, again.stdout + again.stderr


def test_dry_run_and_explain_predict_the_rerun_of_a_step_whose_side_file_is_missing(
    tmp_path: Path,
) -> None:
    first = _flowkit(tmp_path, "run", "crashflows:typed")
    assert first.returncode == 0, first.stdout + first.stderr
    lost = _object(tmp_path, crashflows.typed, "make_set")
    lost.unlink()

    plan = _flowkit(tmp_path, "run", "crashflows:typed", "--dry-run")
    explain = _flowkit(tmp_path, "explain", "crashflows:typed", "make_set")

    assert plan.returncode == 0 and explain.returncode == 0, plan.stderr + explain.stderr
    found = re.findall(r"^\s+(cached|run|skip)\s+(\S+)", plan.stdout, re.MULTILINE)
    verdicts = {name: verdict for verdict, name in found}
    assert verdicts.get("make_set") == "run", plan.stdout
    assert "would run" in explain.stdout and lost.name in explain.stdout, explain.stdout
    assert Counter(_executions(tmp_path)) == dict.fromkeys(crashflows.TYPES_STEPS, 1)


# --- 7, 8: damaged state ------------------------------------------------------------------------


def test_torn_last_journal_line_is_cut_off_and_the_run_resumes(tmp_path: Path) -> None:
    _crash_chain(tmp_path)
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    with open(journal, "ab") as f:
        f.write(b'{"ev": "done", "st')

    resumed = _flowkit(tmp_path, "run", "crashflows:chain")

    _assert_chain_resumed(tmp_path, resumed)
    data = journal.read_bytes()
    assert b'{"ev": "done", "st' not in data
    assert data.endswith(b"\n")
    for line in data.splitlines():
        json.loads(line)  # every line of the journal parses again


def test_torn_last_line_longer_than_64_kib_is_cut_off_without_losing_earlier_records(
    tmp_path: Path,
) -> None:
    # a step returning a big JSON value writes a long line; a kill can tear it anywhere
    _crash_chain(tmp_path)
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    intact = journal.read_bytes()
    with open(journal, "ab") as f:
        f.write(b'{"ev":"done","step":"combine","status":"succeeded","out":"' + b"x" * 70_000)
    # resume, and get killed again while combine runs
    proc = _spawn(tmp_path, "run", "crashflows:chain", CRASHFLOWS_BLOCK="combine")
    _wait_for(lambda: _executions(tmp_path).count("combine") == 2, proc, "combine restarted")
    _sigkill(proc)
    now = journal.read_bytes()
    assert now.startswith(intact), (
        f"the {len(intact)} bytes of records before the torn line were lost: the journal now "
        f"starts with {now[:60]!r}"
    )

    resumed = _flowkit(tmp_path, "run", "crashflows:chain")

    _assert_chain_resumed(tmp_path, resumed, combine_runs=3)


def test_step_reported_cached_from_an_unterminated_last_line_is_not_run_again(
    tmp_path: Path,
) -> None:
    # the last record is complete JSON but its newline never reached the file
    _crash_chain(tmp_path)
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    lines = journal.read_bytes().splitlines()
    # keep everything up to the last finished step, and drop that record's newline (and the
    # start record of the step that crashed, written after it)
    last_done = max(i for i, line in enumerate(lines) if json.loads(line)["ev"] == "done")
    journal.write_bytes(b"\n".join(lines[: last_done + 1]))
    proc = _spawn(tmp_path, "run", "crashflows:chain", CRASHFLOWS_BLOCK="combine")
    _wait_for(lambda: _executions(tmp_path).count("combine") == 2, proc, "combine restarted")
    ran_before = len(_executions(tmp_path))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=TIMEOUT)
    cached = {n for n, label in _labels(out).items() if label == "CACHED"}
    assert cached, out

    resumed = _flowkit(tmp_path, "run", "crashflows:chain")

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = sorted(cached & set(_executions(tmp_path)[ran_before:]))
    assert not again, f"reported CACHED by the killed resume, then executed again: {again}"


def test_corrupt_middle_journal_line_stops_with_exit_2_and_changes_nothing(
    tmp_path: Path,
) -> None:
    _crash_chain(tmp_path)
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    lineno = next(
        i + 1 for i, line in enumerate(lines) if b'"done"' in line and b'"double"' in line
    )
    assert lineno < len(lines) - 2, "the damaged line must not be the last one"
    lines[lineno - 1] = b'{"ev":"done","step":"double",### not json'
    journal.write_bytes(b"\n".join(lines))
    before = journal.read_bytes()
    ran_before = _executions(tmp_path)

    result = _flowkit(tmp_path, "run", "crashflows:chain")

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"journal.jsonl:{lineno}" in result.stderr, result.stderr
    assert "--fresh" in result.stderr and "flowkit clean" in result.stderr, result.stderr
    assert journal.read_bytes() == before
    assert _executions(tmp_path) == ran_before
    assert not (journal.parent / "snapshot.json").exists()


@pytest.mark.parametrize("remedy", ["fresh", "clean"])
def test_remedies_named_in_the_corrupt_journal_error_let_the_run_start_over(
    tmp_path: Path, remedy: str
) -> None:
    _crash_chain(tmp_path)
    state = _state_dir(tmp_path, crashflows.chain)
    journal = state / "journal.jsonl"
    lines = journal.read_bytes().split(b"\n")
    lines[1] = b"### not json"
    journal.write_bytes(b"\n".join(lines))
    corrupt = journal.read_bytes()
    refused = _flowkit(tmp_path, "run", "crashflows:chain")
    advice = {"fresh": "--fresh", "clean": "flowkit clean"}[remedy]
    assert refused.returncode == 2 and advice in refused.stderr, refused.stderr

    if remedy == "fresh":
        rerun = _flowkit(tmp_path, "run", "crashflows:chain", "--fresh")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        previous = state.with_name(state.name + ".previous")
        assert (previous / "journal.jsonl").read_bytes() == corrupt
    else:
        cleaned = _flowkit(tmp_path, "clean", "crashflows:chain")
        assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
        assert not state.exists(), cleaned.stdout
        rerun = _flowkit(tmp_path, "run", "crashflows:chain")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    assert _labels(rerun.stdout) == dict.fromkeys(crashflows.CHAIN_STEPS, "SUCCEEDED")
    assert (tmp_path / "report.txt").read_text() == crashflows.CHAIN_REPORT


def test_unparsable_snapshot_stops_with_exit_2_naming_it_and_leaves_it_untouched(
    tmp_path: Path,
) -> None:
    first = _flowkit(tmp_path, "run", "crashflows:chain")
    assert first.returncode == 0, first.stdout + first.stderr
    state = _state_dir(tmp_path, crashflows.chain)
    snapshot = state / "snapshot.json"
    snapshot.write_bytes(b'{"format": 1, "journal_size": 12')
    journal_before = (state / "journal.jsonl").read_bytes()

    result = _flowkit(tmp_path, "run", "crashflows:chain")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "snapshot.json" in result.stderr, result.stderr
    assert snapshot.read_bytes() == b'{"format": 1, "journal_size": 12'
    assert (state / "journal.jsonl").read_bytes() == journal_before
    assert Counter(_executions(tmp_path)) == dict.fromkeys(crashflows.CHAIN_STEPS, 1)


def test_journal_from_a_newer_format_stops_with_exit_2_asking_to_upgrade(tmp_path: Path) -> None:
    _crash_chain(tmp_path)
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    data = journal.read_bytes()
    assert data.count(b'"format":%d,' % FORMAT) == 1
    lines = data.splitlines(keepends=True)
    header = orjson.loads(lines[0])
    del header["crc"]
    header["format"] = 99  # as a newer flowkit would write it: sealed, format 99
    journal.write_bytes(seal(header) + b"".join(lines[1:]))
    before = journal.read_bytes()

    result = _flowkit(tmp_path, "run", "crashflows:chain")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "format 99" in result.stderr and "Upgrade" in result.stderr, result.stderr
    assert "journal.jsonl" in result.stderr, result.stderr
    assert journal.read_bytes() == before
    assert Counter(_executions(tmp_path)) == {"load": 1, "double": 1, "triple": 1, "combine": 1}


# --- 9: the run lock ----------------------------------------------------------------------------


def test_second_run_of_a_live_run_exits_2_naming_the_pid_until_the_holder_is_killed(
    tmp_path: Path,
) -> None:
    journal = _state_dir(tmp_path, crashflows.chain) / "journal.jsonl"
    holder = _spawn(tmp_path, "run", "crashflows:chain", CRASHFLOWS_BLOCK="combine")
    _wait_for(lambda: "combine" in _executions(tmp_path), holder, "combine started")
    journal_before = journal.read_bytes()

    try:
        second = _flowkit(tmp_path, "run", "crashflows:chain")
    finally:
        assert holder.poll() is None, "the first run should still be blocked in combine"
        _sigkill(holder)

    assert second.returncode == 2, second.stdout + second.stderr
    assert f"pid {holder.pid}" in second.stderr, second.stderr
    assert journal.read_bytes() == journal_before, "the refused run must not write the journal"
    assert Counter(_executions(tmp_path)) == {"load": 1, "double": 1, "triple": 1, "combine": 1}

    after_kill = _flowkit(tmp_path, "run", "crashflows:chain")

    _assert_chain_resumed(tmp_path, after_kill)


# --- 10: kill anywhere --------------------------------------------------------------------------

KILLS_REQUIRED = 30
MID_RUN_KILLS_REQUIRED = 10  # kills after some steps finished and before all of them did
KILL_SEED = int(os.environ.get("FLOWKIT_KILL_SEED", "20261127"))


@dataclass
class _Kill:
    counter_len: int  # lines in the counter file right after the kill
    done: frozenset[str]  # steps whose completion was in the journal right after the kill
    reported: frozenset[str]  # steps the killed process printed as CACHED or SUCCEEDED
    how: str


def _many_run(work: Path, run_id: str) -> subprocess.Popen[str]:
    return _spawn(work, "run", "crashflows:many", "--run-id", run_id, "--workers", "4")


def _kill_loop(
    work: Path, run_id: str, rng: random.Random, seed: int
) -> tuple[list[_Kill], subprocess.CompletedProcess[str]]:
    """Start the run and SIGKILL it at a random moment, again and again, until it finishes."""
    journal = _state_dir(work, crashflows.many, run_id) / "journal.jsonl"
    kills: list[_Kill] = []
    while True:
        assert len(kills) < 100, f"seed={seed} run={run_id}: no completion after 100 kills"
        proc = _many_run(work, run_id)
        early = rng.random() < 0.15
        delay = rng.uniform(0, 0.3)
        if not early:  # measure the delay from the moment this process journaled its header
            header = re.compile(rb'"pid":%d[,}]' % proc.pid)
            deadline = time.monotonic() + TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                if journal.exists() and header.search(journal.read_bytes()):
                    break
                time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=TIMEOUT)
        if proc.returncode == 0:
            return kills, subprocess.CompletedProcess(proc.args, 0, out, err)
        assert proc.returncode == -signal.SIGKILL, (
            f"seed={seed} run={run_id}: exit {proc.returncode}\n{out}\n{err}"
        )
        done = frozenset(_done(journal)) if journal.exists() else frozenset()
        how = f"{'early' if early else 'after header'} +{delay:.3f}s"
        reported = frozenset(
            n for n, label in _labels(out).items() if label in ("CACHED", "SUCCEEDED")
        )
        kills.append(_Kill(len(_executions(work)), done, reported, how))


def test_sigkill_at_random_moments_never_reruns_a_journaled_step_and_ends_like_a_clean_run(
    tmp_path: Path,
) -> None:
    seed = KILL_SEED
    replay = f"seed={seed} (replay with FLOWKIT_KILL_SEED={seed})"
    steps = set(crashflows.MANY_UPSTREAM)
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = _many_run(clean_dir, "clean")
    clean_out, clean_err = clean.communicate(timeout=TIMEOUT)
    assert clean.returncode == 0, clean_out + clean_err
    clean_hashes = {
        n: r["hash"]
        for n, r in _done(_state_dir(clean_dir, crashflows.many, "clean") / "journal.jsonl").items()
    }
    assert set(clean_hashes) == steps
    clean_sink = (clean_dir / "sink.txt").read_text()

    rng = random.Random(seed)
    total_kills = mid_run_kills = interrupted_steps = 0
    run_no = 0
    # on a slow machine more kills land before the first step finishes: keep going until enough
    # of them caught a run in the middle
    while total_kills < KILLS_REQUIRED or mid_run_kills < MID_RUN_KILLS_REQUIRED:
        assert total_kills < 8 * KILLS_REQUIRED and run_no < 60, (
            f"{replay}: {total_kills} kills over {run_no} runs, only {mid_run_kills} mid-run"
        )
        run_id = f"kill-{run_no}"
        run_no += 1
        work = tmp_path / run_id
        work.mkdir()
        kills, final = _kill_loop(work, run_id, rng, seed)
        where = f"{replay}, run {run_id}, kills: {[k.how for k in kills]}"
        total_kills += len(kills)
        mid_run_kills += sum(1 for k in kills if 0 < len(k.done) < len(steps))

        # the last run finished every step
        labels = _labels(final.stdout)
        assert set(labels) == steps, f"{where}\n{final.stdout}"
        assert set(labels.values()) <= {"CACHED", "SUCCEEDED"}, f"{where}\n{final.stdout}"
        journal = _state_dir(work, crashflows.many, run_id) / "journal.jsonl"
        final_done = _done(journal)
        assert set(final_done) == steps, where

        executions = _executions(work)
        # what a killed process printed as finished was in the journal when it died
        for k in kills:
            lost = sorted(k.reported - k.done)
            assert not lost, f"{where}: reported finished, not journaled at kill '{k.how}': {lost}"
        # a step whose completion was journaled before a kill never executes after that kill
        for k in kills:
            again = sorted(k.done & set(executions[k.counter_len :]))
            assert not again, f"{where}: journaled before kill '{k.how}', executed again: {again}"
        # exactly one more execution per kill that caught the step running, unjournaled
        bounds = [0, *(k.counter_len for k in kills)]
        expected = Counter(steps)
        for k, start, end in zip(kills, bounds[:-1], bounds[1:], strict=True):
            cut_short = set(executions[start:end]) - k.done
            interrupted_steps += len(cut_short)
            expected.update(cut_short)
        assert Counter(executions) == expected, where
        # steps executed in dependency order: an upstream's execution precedes its dependents'
        seen: set[str] = set()
        for name in executions:
            missing = set(crashflows.MANY_UPSTREAM[name]) - seen
            assert not missing, f"{where}: {name} executed before {sorted(missing)}"
            seen.add(name)
        # and the outputs are those of a run that was never killed
        hashes = {n: r["hash"] for n, r in final_done.items()}
        differ = sorted(n for n in steps if hashes[n] != clean_hashes[n])
        assert not differ, f"{where}: outputs differ from a clean run's: {differ}"
        assert (work / "sink.txt").read_text() == clean_sink, where

    assert interrupted_steps >= 1, f"{replay}: no kill ever caught a step while it ran"
