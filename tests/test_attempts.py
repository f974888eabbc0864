"""Every attempt of a run, read back from its journal (``flowkit.attempts``), and the HTML
report's timeline drawing one labelled bar per attempt with the wait before each retry."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from flowkit import Flow
from flowkit.attempts import AttemptLog
from flowkit.cli import main

PIPELINE = """
from pathlib import Path
from flowkit import Flow

flow = Flow("retried")

@flow.step()
def load() -> int:
    return 1

@flow.step(retries=2, backoff=0.05)
def shaky(load: int) -> int:
    tries = Path("tries")
    n = int(tries.read_text()) + 1 if tries.exists() else 1
    tries.write_text(str(n))
    if n < 3:
        raise ConnectionError(f"refused <#{n}>")
    return load + n
"""


def test_each_attempt_has_its_start_end_outcome_and_the_wait_after_it(tmp_path: Path) -> None:
    calls = {"n": 0}
    f = Flow("retrying")

    @f.step(retries=2, backoff=0.05)
    def shaky() -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"refused #{calls['n']}")
        return 1

    f.run(state_dir=tmp_path / "st")
    log = AttemptLog.read(tmp_path / "st" / "retrying" / "retrying" / "journal.jsonl")
    tries = log.by_step["shaky"]
    assert [(a.n, a.status, a.error) for a in tries] == [
        (1, "failed", "ConnectionError: refused #1"),
        (2, "failed", "ConnectionError: refused #2"),
        (3, "succeeded", ""),
    ]
    for a, b in itertools.pairwise(tries):
        assert a.start is not None and a.end is not None and b.start is not None
        assert a.start <= a.end and a.delay == pytest.approx(0.05)
        assert a.end + a.delay <= b.start + 0.01  # the wait lies between the two attempts


def test_a_retry_record_without_a_time_ends_its_attempt_where_the_wait_began() -> None:
    log = AttemptLog()
    log.apply_all(
        [
            {"ev": "run", "time": 0.0},
            {"ev": "start", "step": "s", "time": 10.0},
            {"ev": "retry", "step": "s", "attempt": 1, "delay": 2.0, "error": {"type": "E"}},
            {"ev": "start", "step": "s", "time": 13.0, "attempt": 2},
            {"ev": "done", "step": "s", "status": "succeeded", "start": 13.0, "end": 14.0},
        ]
    )
    first, second = log.by_step["s"]
    assert (first.start, first.end, first.status, first.delay) == (10.0, 11.0, "failed", 2.0)
    assert (second.n, second.start, second.end, second.status) == (2, 13.0, 14.0, "succeeded")


def test_an_unwatched_inline_attempt_has_no_start_record_and_its_done_record_tells_when(
    tmp_path: Path,
) -> None:
    f = Flow("quiet")

    @f.step()
    def once() -> int:
        return 1

    @f.step(retries=1)
    def retriable(once: int) -> int:
        return once

    f.run(state_dir=tmp_path / "a")  # no listener: nobody watches the inline attempt
    journal = tmp_path / "a" / "quiet" / "quiet" / "journal.jsonl"
    starts = [r for r in _records(journal) if r["ev"] == "start"]
    assert [r["step"] for r in starts] == ["retriable"]  # it could fail and be retried
    (only,) = AttemptLog.read(journal).by_step["once"]
    done = next(r for r in _records(journal) if r["ev"] == "done" and r["step"] == "once")
    assert (only.n, only.status) == (1, "succeeded")
    assert (only.start, only.end) == (done["start"], done["end"])

    f.run(state_dir=tmp_path / "b", on_event=lambda e: None)  # watched: every attempt starts
    watched = _records(tmp_path / "b" / "quiet" / "quiet" / "journal.jsonl")
    assert sorted(r["step"] for r in watched if r["ev"] == "start") == ["once", "retriable"]


def _records(journal: Path) -> list[dict[str, object]]:
    import orjson

    return [orjson.loads(line) for line in journal.read_bytes().splitlines()]


def test_a_new_session_starts_a_new_list_of_attempts() -> None:
    log = AttemptLog()
    log.apply_all(
        [
            {"ev": "start", "step": "s", "time": 1.0},
            {"ev": "run", "time": 5.0},
            {"ev": "start", "step": "t", "time": 6.0},
        ]
    )
    assert list(log.by_step) == ["t"]


def test_the_html_report_draws_one_labelled_bar_per_attempt_and_each_wait(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "retried.py").write_text(PIPELINE)
    assert main(["run", "retried.py:flow", "--state-dir", "st", "--plain"]) == 0
    assert main(["report", "retried.py:flow", "--state-dir", "st", "--html", "r.html"]) == 0
    capsys.readouterr()
    html = (tmp_path / "r.html").read_text()
    bars = re.findall(
        r'<rect class="bar st-(\w+)" data-step="shaky" data-attempt="(\d)"[^>]*>', html
    )
    assert bars == [("failed", "1"), ("failed", "2"), ("succeeded", "3")]
    assert len(re.findall(r'<rect class="wait" data-step="shaky"', html)) == 2
    assert "waited 50ms before attempt 2" in html
    assert "shaky #1 — failed" in html and "ConnectionError: refused &lt;#1&gt;" in html
    # a step that ran once is one bar, as before
    assert len(re.findall(r'<rect class="bar st-succeeded" data-step="load"', html)) == 1
