"""The read side of the journal: a step's status, attempts, own time and reason in the latest
session (flowkit.stepview), and what the report makes of it: tracebacks cut to the user's
frames, bounded log tails."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_flowkit

from flowkit.attempts import AttemptLog
from flowkit.report.model import StepRow, log_tails
from flowkit.report.trace import user_frames
from flowkit.stepview import instances_of, split_instance, view_step, views_of
from flowkit.store import LoadedState

T0 = 1_700_000_000.0


def _read(records: list[dict[str, Any]]) -> tuple[LoadedState, AttemptLog]:
    state, log = LoadedState(), AttemptLog()
    for rec in records:
        state.apply(rec)
        log.apply(rec)
    return state, log


def test_split_instance() -> None:
    assert split_instance("fetch[north]") == ("fetch", "north")
    assert split_instance("fit[lr=0.1]") == ("fit", "lr=0.1")
    assert split_instance("plain") == ("plain", None)
    assert split_instance("[odd]") == ("[odd]", None)
    assert split_instance("half[open") == ("half[open", None)


RETRIED = [
    {"ev": "run", "run_id": "r", "time": T0},
    {"ev": "start", "step": "s", "time": T0},
    {
        "ev": "retry",
        "step": "s",
        "time": T0 + 1,
        "attempt": 1,
        "delay": 5.0,
        "error": {"type": "OSError", "message": "refused"},
        "timed_out": False,
        "worker": "9:flowkit_1",
    },
]


def test_a_step_waiting_for_its_retry_is_retrying_while_the_run_lives() -> None:
    state, log = _read(RETRIED)
    tries = log.by_step["s"]
    assert view_step("s", state, running=True, tries=tries).status == "retrying"
    assert view_step("s", state, running=False, tries=tries).status == "interrupted"
    again = [*RETRIED, {"ev": "start", "step": "s", "time": T0 + 6, "attempt": 2}]
    state, log = _read(again)
    view = view_step("s", state, running=True, tries=log.by_step["s"])
    assert (view.status, view.attempts) == ("running", 2)
    assert view.retried == ((1, "OSError: refused", 5.0),)
    assert [t.worker for t in view.tries] == ["9:flowkit_1", None]


def test_a_steps_duration_is_its_own_attempts_time_not_the_waits() -> None:
    done = {
        "ev": "done",
        "step": "s",
        "status": "succeeded",
        "attempts": 2,
        "start": T0,
        "end": T0 + 7,
        "dur": 7.0,  # the span: the 5 s wait included
        "worker": "9:flowkit_0",
        "key": "k1",
    }
    state, log = _read([*RETRIED, {"ev": "start", "step": "s", "time": T0 + 6, "attempt": 2}, done])
    view = view_step("s", state, tries=log.by_step["s"])
    assert view.duration == pytest.approx(2.0)
    assert [(t.status, t.worker) for t in view.tries] == [
        ("failed", "9:flowkit_1"),
        ("succeeded", "9:flowkit_0"),
    ]
    assert (view.key, view.worker, view.reason) == ("k1", "9:flowkit_0", "new")
    # without the attempts, what the record says
    assert view_step("s", state).duration == pytest.approx(7.0)


def test_any_reason_the_journal_gives_is_kept_as_text() -> None:
    recs = [
        {"ev": "run", "run_id": "r", "time": T0},
        {"ev": "done", "step": "a", "status": "succeeded", "reason": "cached from run R7"},
        {"ev": "run", "run_id": "r", "time": T0 + 10},
        {"ev": "cached", "steps": ["a"]},
    ]
    state, _ = _read(recs[:2])
    assert view_step("a", state).reason == "cached from run R7"
    state, _ = _read(recs)
    view = view_step("a", state)
    assert view.status == "cached"
    assert view.reason.endswith("(it ran: cached from run R7)")


def test_instances_follow_their_step_and_a_gather_of_restored_ones_is_cached() -> None:
    recs: list[dict[str, Any]] = [{"ev": "run", "run_id": "r", "time": T0}]
    for label in ("north", "south"):
        recs.append({"ev": "done", "step": f"fetch[{label}]", "status": "succeeded"})
    recs.append({"ev": "done", "step": "fetch", "status": "succeeded"})
    recs += [
        {"ev": "run", "run_id": "r", "time": T0 + 10},
        {"ev": "cached", "steps": ["fetch[north]", "fetch[south]"]},
        {"ev": "done", "step": "fetch", "status": "succeeded", "end": T0 + 11},
    ]
    state, log = _read(recs)
    assert instances_of({"fetch"}, state) == {"fetch": ["fetch[north]", "fetch[south]"]}
    [(view, subs)] = views_of(["fetch"], state, attempts=log)
    assert view.status == "cached"
    assert [(s.name, s.parent, s.label, s.status) for s in subs] == [
        ("fetch[north]", "fetch", "north", "cached"),
        ("fetch[south]", "fetch", "south", "cached"),
    ]


FLAKY = """\
import pathlib, time
from flowkit import Flow
flow = Flow("flaky")

@flow.step(retries=1, backoff=0.4)
def flaky() -> int:
    calls = pathlib.Path(__file__).with_name("calls")
    n = len(calls.read_text()) if calls.exists() else 0
    calls.write_text("x" * (n + 1))
    time.sleep(0.05)
    print(f"call {n + 1}")
    if n == 0:
        raise ConnectionError("refused")
    return 1
"""


def test_status_report_and_page_show_the_same_duration(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(FLAKY)
    assert run_flowkit(tmp_path, "run", "p.py:flow", "--plain").returncode == 0
    status = run_flowkit(tmp_path, "status", "p.py:flow").stdout
    row = next(line for line in status.splitlines() if line.startswith("flaky"))
    shown = row.split()[3]  # STEP STATE ATTEMPTS DURATION
    data = json.loads(run_flowkit(tmp_path, "status", "p.py:flow", "--json").stdout)
    took = data["steps"][0]["duration_s"]
    assert 0.1 <= took < 0.4, took  # two attempts of ~50 ms: the 0.4 s wait is not the step's
    page = tmp_path / "r.html"
    assert run_flowkit(tmp_path, "report", "p.py:flow", "--html", str(page)).returncode == 0
    cell = re.search(r'<td class="num dur">([^<]*)</td>', page.read_text())
    assert cell is not None and cell.group(1) == shown
    assert "call 2" in page.read_text()  # the end of its log, embedded


TRACEBACK = """\
Traceback (most recent call last):
  File "/home/me/proj/pipeline.py", line 12, in parse
    return json.loads(text)
           ^^^^^^^^^^^^^^^^
  File "{stdlib}/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
  File "{stdlib}/json/decoder.py", line 337, in decode
    obj, end = self.raw_decode(s, idx=_w(s, 0).end())
  File "/usr/lib/python3.11/site-packages/flowkit/executors.py", line 80, in invoke
    out = fn(*args)
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"""


def test_tracebacks_keep_the_users_frames_and_the_exception() -> None:
    import sysconfig

    tb = TRACEBACK.format(stdlib=sysconfig.get_paths()["stdlib"])
    out = user_frames(tb)
    assert out.splitlines() == [
        "Traceback (most recent call last):",
        '  File "/home/me/proj/pipeline.py", line 12, in parse',
        "    return json.loads(text)",
        "           ^^^^^^^^^^^^^^^^",
        "  [3 frames of flowkit or the standard library left out]",
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
    ]
    assert user_frames("ValueError: plain") == "ValueError: plain"


def test_log_tails_are_bounded_per_step_and_in_all(tmp_path: Path) -> None:
    rows = [StepRow(name=f"s{i}", tier=0, status="succeeded") for i in range(20)]
    rows[7] = StepRow(name="s7", tier=0, status="failed")
    for i in range(20):
        lines = [f"s{i} line {n} <b>" for n in range(100)]
        (tmp_path / f"s{i}.log").write_text("\n".join(lines) + "\n")
    tails = log_tails(tmp_path, rows, lines=40, per_step=4096, total=3000)
    assert "s7" in tails  # failed steps are served first
    assert sum(len(t) for t in tails.values()) <= 3000
    assert len(tails) < 20
    one = log_tails(tmp_path, rows[:1], lines=40, per_step=4096, total=10**6)["s0"]
    assert one.splitlines() == [f"s0 line {n} <b>" for n in range(60, 100)]
    cut = log_tails(tmp_path, rows[:1], lines=40, per_step=200, total=10**6)["s0"]
    assert len(cut) <= 200 and cut.splitlines()[-1] == "s0 line 99 <b>"
    assert cut.splitlines()[0].startswith("s0 line ")  # no line read from its middle


def test_a_timed_out_thread_step_records_the_thread_it_ran_on(tmp_path: Path) -> None:
    import time

    from flowkit import Flow

    flow = Flow("stuck")

    @flow.step(timeout=0.2, retries=1)
    def stuck() -> None:
        time.sleep(1.0)

    result = flow.run(state_dir=tmp_path, executor="thread", workers=2)
    assert not result.ok
    state = flow.load_state(state_dir=tmp_path)
    log = AttemptLog.read(tmp_path / "stuck" / "stuck" / "journal.jsonl")
    view = view_step("stuck", state, tries=log.by_step["stuck"])
    assert view.status == "timed_out"
    workers = [t.worker or "" for t in view.tries]
    assert len(workers) == 2 and all(":flowkit-timed-" in w for w in workers), workers
    assert workers[0] != workers[1]  # each attempt had a thread of its own
    assert view.worker == workers[1]
