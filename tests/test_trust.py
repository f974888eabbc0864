"""State read back from disk is checked before it is used.

Journal lines carry a checksum and every record is validated (a damaged line is reported as
corruption, never read as something else); inline outputs must match their hash; pickled outputs
must carry a signature made with the user's key, or they are not unpickled; outputs beside a lost
journal are moved aside, not overwritten. The fault-injection test at the end flips 1,000 random
bits of a real journal and checks that none gives a wrong result or a traceback.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import PYTHON, flowkit_env, run_flowkit, run_flowkit_each

from flowkit import Flow, Status
from flowkit.errors import CorruptStateError
from flowkit.keys import digest
from flowkit.records import RecordError, parse_line, read_journal, seal, validate
from flowkit.secret import key_path, secret_key
from flowkit.store import FORMAT, RunStore

PIPELINE = """\
from __future__ import annotations

import os
from pathlib import Path

from flowkit import Flow

trust = Flow("trust")


def ran(name: str) -> None:
    with open("ran.txt", "a") as f:
        f.write(name + "\\n")


@trust.step()
def numbers() -> int:
    ran("numbers")
    return 24706


@trust.step()
def shapes(numbers: int) -> frozenset[int]:
    ran("shapes")
    return frozenset({numbers, 7})


@trust.step()
def check(numbers: int) -> int:
    ran("check")
    if os.environ.get("TRUST_CHECK_FAILS") == "1":
        raise KeyError("missing_key")
    return numbers


@trust.step()
def after_check(check: int) -> int:
    ran("after_check")
    return check


@trust.step()
def consumer(numbers: int, shapes: frozenset[int]) -> str:
    ran("consumer")
    text = f"{numbers} {sorted(shapes)}"
    Path("consumer.txt").write_text(text)
    return text
"""


def _write_pipeline(folder: Path) -> None:
    (folder / "pipe.py").write_text(PIPELINE)


_flowkit = run_flowkit


def _run_dir(folder: Path) -> Path:
    return folder / ".flowkit" / "trust" / "trust"


def _stored(folder: Path, step: str) -> Path:
    """The file holding ``step``'s output in the run's latest state."""
    store = RunStore(folder / ".flowkit", "trust", "trust")
    path = store.file_of(store.load().steps[step])
    assert path is not None
    return path


def _ran(folder: Path) -> list[str]:
    path = folder / "ran.txt"
    return path.read_text().split() if path.exists() else []


def _records(journal: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in journal.read_bytes().splitlines()]


def _rewrite(journal: Path, edit: Callable[[dict[str, Any]], None], *, sealed: bool) -> None:
    """Rewrite every record through ``edit``: re-sealed (a careful forger), or with no seals at
    all (a journal as flowkit wrote it before lines were sealed)."""
    out = []
    for rec in _records(journal):
        rec.pop("crc", None)
        edit(rec)
        out.append(seal(rec) if sealed else orjson.dumps(rec) + b"\n")
    journal.write_bytes(b"".join(out))


def _set_done(step: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(rec: dict[str, Any]) -> None:
        if rec.get("ev") == "done" and rec.get("step") == step:
            rec.update(fields)

    return edit


# --- a damaged or edited record is corruption, not a different state ---------------------


def test_seal_adds_a_crc_field_last_and_parse_line_checks_it() -> None:
    line = seal({"ev": "cached", "step": "a"})
    assert line.endswith(b"}\n") and b',"crc":' in line
    rec, was_sealed = parse_line(line.rstrip(b"\n"), sealed=False)
    assert rec == {"ev": "cached", "step": "a"} and was_sealed
    with pytest.raises(RecordError, match="altered"):
        parse_line(line.rstrip(b"\n").replace(b'"a"', b'"b"'), sealed=False)


def test_a_line_without_checksum_after_sealed_lines_is_damage() -> None:
    unsealed = orjson.dumps({"ev": "cached", "step": "a"})
    assert parse_line(unsealed, sealed=False) == ({"ev": "cached", "step": "a"}, False)
    with pytest.raises(RecordError, match="no checksum"):
        parse_line(unsealed, sealed=True)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"ev": "dnoe", "step": "a"}, "unknown record type 'dnoe'"),
        ({"step": "a"}, "unknown record type None"),
        ({"ev": "done", "status": "succeeded"}, "needs a 'step' field"),
        ({"ev": "done", "step": "a", "status": "fajled", "error": {}}, "unknown step status"),
        ({"ev": "done", "step": 3, "status": "failed", "error": {}}, "field 'step'"),
        ({"ev": "done", "step": "a", "status": "succeeded", "out": 1}, "needs its output 'hash'"),
        ({"ev": "done", "step": "a", "status": "succeeded", "hash": "h"}, "'out' or 'obj'"),
        ({"ev": "done", "step": "a", "status": "failed"}, "needs its 'error'"),
        ({"ev": "done", "step": "a", "status": "skipped", "attempts": True}, "'attempts'"),
        ({"ev": "end", "status": "finished", "time": 1.0}, "unknown run status"),
        ({"ev": "run", "format": 1, "flow": "f", "run_id": "r", "time": 1.0}, "'params'"),
        ({"ev": "retry", "step": "a", "attempt": "2"}, "field 'attempt'"),
    ],
)
def test_validate_names_what_is_wrong_with_a_record(record: dict[str, Any], problem: str) -> None:
    with pytest.raises(RecordError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        validate(record)


def test_a_remembered_record_shape_still_catches_each_bad_value() -> None:
    # records with the same field names as good ones already seen: the status, a value's type
    # and the values inside fields are still checked
    good = {"ev": "done", "step": "a", "status": "succeeded", "out": 1, "hash": "h"}
    validate(good)
    validate(dict(good))  # the remembered shape
    with pytest.raises(RecordError, match="unknown step status 'succeded'"):
        validate({**good, "status": "succeded"})
    with pytest.raises(RecordError, match="field 'step'"):
        validate({**good, "step": ["a"]})
    with_ctx = {**good, "ctx": {"hash": "h", "out": {}}}
    validate(with_ctx)
    with pytest.raises(RecordError, match="'ctx' field"):
        validate({**good, "ctx": {"hash": 3, "out": {}}})
    validate({"ev": "cached", "steps": ["a", "b"]})
    with pytest.raises(RecordError, match="step names"):
        validate({"ev": "cached", "steps": ["a", 2]})
    with pytest.raises(RecordError, match="unknown record type"):
        validate({"ev": ["done"], "step": "a"})  # not hashable: checked in full


def test_a_sealed_line_whose_content_was_altered_is_named_by_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    lines = [seal({"ev": "skip", "step": s, "reason": "r"}) for s in ("a", "b", "c")]
    lines[1] = lines[1].replace(b'"b"', b'"x"')
    path.write_bytes(b"".join(lines))
    with pytest.raises(CorruptStateError, match=r"jsonl:2: its checksum does not match"):
        list(read_journal(path))


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "legacy-unsealed"])
def test_edited_failed_status_is_corruption_exit_2_not_a_passing_run(
    tmp_path: Path, sealed: bool
) -> None:
    _write_pipeline(tmp_path)
    assert _flowkit(tmp_path, "run", "pipe.py:trust", TRUST_CHECK_FAILS="1").returncode == 1
    journal = _run_dir(tmp_path) / "journal.jsonl"
    if not sealed:  # the same journal as an older flowkit wrote it: no checksums at all
        _rewrite(journal, lambda rec: None, sealed=False)
    data = journal.read_bytes()
    failed = b'"step":"check","status":"failed"'
    assert data.count(failed) == 1
    journal.write_bytes(data.replace(failed, failed.replace(b"failed", b"fajled")))
    (_run_dir(tmp_path) / "snapshot.json").unlink()
    before = journal.read_bytes()
    line = next(i for i, x in enumerate(before.splitlines(), 1) if b"fajled" in x)

    result = _flowkit(tmp_path, "run", "pipe.py:trust", TRUST_CHECK_FAILS="1")

    assert result.returncode == 2, result.stdout + result.stderr
    assert f"journal.jsonl:{line}:" in result.stderr, result.stderr
    assert ("fajled" in result.stderr) != sealed, result.stderr  # unsealed: validation names it
    assert "Traceback" not in result.stderr
    assert journal.read_bytes() == before, "nothing may change"


def test_damaged_line_in_the_middle_is_reported_with_file_and_line_by_every_reader(
    tmp_path: Path,
) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:trust")
    journal = _run_dir(tmp_path) / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"ev":', b'"ev" :', 1)  # still JSON, no longer what was sealed
    journal.write_bytes(b"".join(lines))
    result = _flowkit(tmp_path, "run", "pipe.py:trust")  # a real process, as a user runs it
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "journal.jsonl:3" in result.stderr and "Traceback" not in result.stderr
    *readers, runs = run_flowkit_each(
        tmp_path,
        ["status", "pipe.py:trust"],
        ["report", "pipe.py:trust"],
        ["explain", "pipe.py:trust", "consumer"],
        ["runs", "pipe.py:trust"],
    )
    for result in readers:
        assert result.returncode == 2, (result.args, result.stdout, result.stderr)
        assert "journal.jsonl:3" in result.stderr and "Traceback" not in result.stderr, result.args
    assert runs.returncode == 0 and "corrupt" in runs.stdout, runs.stdout + runs.stderr


def test_torn_sealed_last_line_is_forgiven_and_cut_off(tmp_path: Path) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:trust")
    journal = _run_dir(tmp_path) / "journal.jsonl"
    (_run_dir(tmp_path) / "snapshot.json").unlink()
    data = journal.read_bytes()
    journal.write_bytes(data[:-9])  # a kill in the middle of writing the `end` record
    result = _flowkit(tmp_path, "run", "pipe.py:trust")
    assert result.returncode == 0, result.stderr
    for line in journal.read_bytes().splitlines():
        parse_line(line, sealed=True)  # every line whole and sealed again


def test_records_written_by_a_run_are_all_sealed_and_valid(tmp_path: Path) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:trust")
    _flowkit(tmp_path, "run", "pipe.py:trust")  # a resume adds cached records
    lines = (_run_dir(tmp_path) / "journal.jsonl").read_bytes().splitlines()
    evs = {parse_line(line, sealed=True)[0]["ev"] for line in lines}
    assert evs >= {"run", "start", "done", "cached", "end"}


# --- inline outputs are checked against their hash ---------------------------------------


@pytest.mark.parametrize("sealed", [True, False], ids=["resealed", "legacy-unsealed"])
def test_altered_inline_output_reruns_its_step_and_the_consumer_gets_the_true_value(
    tmp_path: Path, sealed: bool
) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:trust")
    journal = _run_dir(tmp_path) / "journal.jsonl"
    _rewrite(journal, _set_done("numbers", out=94706), sealed=sealed)
    (_run_dir(tmp_path) / "snapshot.json").unlink()

    plan = _flowkit(tmp_path, "explain", "pipe.py:trust", "numbers")
    assert "inline output in the journal was altered" in plan.stdout, plan.stdout + plan.stderr
    result = _flowkit(tmp_path, "run", "pipe.py:trust", "--rerun", "consumer", "-v")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "consumer.txt").read_text() == "24706 [7, 24706]"
    assert "inline output in the journal was altered" in result.stdout, result.stdout
    assert _ran(tmp_path).count("numbers") == 2


def test_altered_inline_ctx_write_reruns_the_step_that_wrote_it(tmp_path: Path) -> None:
    flow = Flow("ctxflow")
    seen: list[Any] = []

    @flow.step()
    def writer(ctx: Any) -> None:
        ctx["token"] = "abc"

    @flow.step(depends_on=["writer"])
    def reader(ctx: Any) -> str:
        seen.append(ctx["token"])
        return str(ctx["token"])

    flow.run(state_dir=tmp_path)
    journal = tmp_path / "ctxflow" / "ctxflow" / "journal.jsonl"

    def forge(rec: dict[str, Any]) -> None:
        if rec.get("ev") == "done" and rec.get("step") == "writer":
            rec["ctx"]["out"] = {"token": "forged"}

    _rewrite(journal, forge, sealed=True)
    result = flow.run(state_dir=tmp_path, rerun=["reader"])
    assert result["writer"].status is Status.SUCCEEDED
    assert "inline output in the journal was altered" in result["writer"].reason
    assert seen == ["abc", "abc"]


# --- pickled outputs are authenticated before they are unpickled -------------------------


class _Payload:
    """Unpickling this runs ``touch`` on a marker file: what an attacker's pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_tampered_pickle_with_rewritten_hash_is_never_unpickled(tmp_path: Path) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:trust")
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    assert _stored(tmp_path, "shapes").is_file()
    forged = digest(payload) + ".pkl"  # a new object, named as flowkit would name it
    objects = _run_dir(tmp_path).parent / "objects"
    (objects / forged[:2]).mkdir(exist_ok=True)
    (objects / forged[:2] / forged).write_bytes(payload)
    _rewrite(
        _run_dir(tmp_path) / "journal.jsonl",
        _set_done("shapes", hash=digest(payload), obj=forged),
        sealed=True,
    )
    (_run_dir(tmp_path) / "snapshot.json").unlink()

    result = _flowkit(tmp_path, "run", "pipe.py:trust", "--rerun", "consumer")

    assert not marker.exists(), "the payload ran"
    assert result.returncode == 0, result.stderr
    assert forged in result.stderr and "not signed" in result.stderr, result.stderr
    assert _ran(tmp_path).count("shapes") == 2
    assert (tmp_path / "consumer.txt").read_text() == "24706 [7, 24706]"


def _shapes_flow() -> tuple[Flow, list[str]]:
    flow = Flow("shapes")
    calls: list[str] = []

    @flow.step()
    def shapes() -> frozenset[int]:
        calls.append("shapes")
        return frozenset({1, 2})

    return flow, calls


def test_state_copied_to_another_user_reruns_pickled_steps_unless_the_key_is_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    flow, calls = _shapes_flow()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-a"))
    flow.run(state_dir=tmp_path / "state")
    assert flow.run(state_dir=tmp_path / "state")["shapes"].status is Status.CACHED

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-b"))  # another machine's user
    shutil.copytree(tmp_path / "state", tmp_path / "copied")
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        result = flow.run(state_dir=tmp_path / "copied")
    assert result["shapes"].status is Status.SUCCEEDED and "not signed" in result["shapes"].reason
    assert "step 'shapes' re-runs: object" in caplog.text and "not unpickled" in caplog.text

    monkeypatch.setenv("FLOWKIT_SECRET", "shared-ci-secret")  # CI: one secret for every job
    flow.run(state_dir=tmp_path / "ci", fresh=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-c"))
    shutil.copytree(tmp_path / "ci", tmp_path / "ci-restored")
    assert flow.run(state_dir=tmp_path / "ci-restored")["shapes"].status is Status.CACHED
    assert calls == ["shapes", "shapes", "shapes"]


def test_secret_key_file_is_created_once_with_mode_0600_under_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert key_path() == tmp_path / "cfg" / "flowkit" / "secret"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(secret_key())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    mode = stat.S_IMODE(key_path().stat().st_mode)
    assert mode == 0o600, oct(mode)
    assert stat.S_IMODE(key_path().parent.stat().st_mode) == 0o700
    assert [p.name for p in key_path().parent.iterdir()] == ["secret"], "no temporary files left"
    key_path().unlink()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg2"))
    assert secret_key() != keys[0]


def test_two_processes_creating_the_key_at_once_agree_on_it(tmp_path: Path) -> None:
    code = "from flowkit.secret import secret_key; print(secret_key().hex())"
    env = flowkit_env(XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    procs = [
        subprocess.Popen([PYTHON, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(outs) == 1 and len(next(iter(outs))) == 64


def test_unwritable_config_dir_falls_back_to_a_process_key_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocker))
    flow, _ = _shapes_flow()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        assert flow.run(state_dir=tmp_path / "s").ok
    assert "FLOWKIT_SECRET" in caplog.text and str(blocker) in caplog.text


# --- outputs beside an empty or deleted journal -------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_lost_journal_beside_outputs_is_reported_and_the_old_files_are_moved_aside(
    tmp_path: Path, how: str
) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:trust")
    run_dir = _run_dir(tmp_path)
    stored = _stored(tmp_path, "shapes")
    journal = run_dir / "journal.jsonl"
    (run_dir / "snapshot.json").unlink()
    if how == "deleted":
        journal.unlink()
    else:
        journal.write_bytes(b"")

    result = _flowkit(tmp_path, "run", "pipe.py:trust")

    assert result.returncode == 0, result.stderr
    said = {"deleted": "journal is missing", "emptied": "journal is empty"}[how]
    assert "run folder .flowkit/trust/trust has" in result.stderr, result.stderr
    assert said in result.stderr and "report.json" in result.stderr, result.stderr
    assert "trust.previous" in result.stderr
    moved = run_dir.with_name("trust.previous")
    assert (moved / "report.json").is_file()
    assert _stored(tmp_path, "shapes") == stored  # equal bytes: the same object, kept
    assert _ran(tmp_path).count("numbers") == 2  # started over, knowingly


# --- fault injection: 1,000 random bit flips in a real journal -----------------------------------


def _flip_flow(calls: list[str]) -> Flow:
    flow = Flow("flips")

    @flow.step()
    def a() -> int:
        calls.append("a")
        return 41

    @flow.step()
    def b(a: int) -> frozenset[int]:  # pickled
        calls.append("b")
        return frozenset({a, 1})

    @flow.step()
    def c(ctx: Any, a: int) -> dict[str, int]:
        calls.append("c")
        ctx["seen"] = a
        return {"x": a, "y": 2}

    @flow.step()
    def d(a: int) -> int:
        calls.append("d")
        raise KeyError("missing_key")

    @flow.step()
    def e(d: int) -> int:
        calls.append("e")
        return d

    @flow.step(when=lambda a: a < 0)
    def g(a: int) -> int:
        calls.append("g")
        return a

    @flow.step(depends_on=["c"])
    def h(ctx: Any, b: frozenset[int], c: dict[str, int]) -> str:
        calls.append("h")
        return f"{sorted(b)} {c['x'] + c['y']} {ctx['seen']}"

    return flow


def _outcome(flow: Flow, state: Path) -> dict[str, Any]:
    result = flow.run(state_dir=state, fail_fast=False)
    return {name: (r.output if r.status.ok else r.status.value) for name, r in result.steps.items()}


def test_1000_random_bit_flips_give_no_wrong_result_and_no_traceback(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = _flip_flow(calls)
    pristine = tmp_path / "pristine"
    expected = _outcome(flow, pristine)
    assert _outcome(flow, pristine) == expected  # a resume session too: cached/skip records
    assert expected["h"] == "[1, 41] 43 41" and expected["d"] == "failed"
    run_dir = pristine / "flips" / "flips"
    data = (run_dir / "journal.jsonl").read_bytes()
    rng = random.Random(20261202)
    counts = {"corruption reported": 0, "same result": 0}
    wrong: list[str] = []
    for i in range(1000):
        pos, bit = rng.randrange(len(data)), rng.randrange(8)
        flipped = bytearray(data)
        flipped[pos] ^= 1 << bit
        state = tmp_path / f"s{i % 4}"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(pristine, state)
        (state / "flips" / "flips" / "journal.jsonl").write_bytes(bytes(flipped))
        try:
            got = _outcome(flow, state)
        except CorruptStateError:
            counts["corruption reported"] += 1
            continue
        if got == expected:
            counts["same result"] += 1
        else:
            wrong.append(f"byte {pos} bit {bit} ({data[pos : pos + 1]!r}): {got}")
    assert wrong == [], "\n".join(wrong[:10])
    assert counts["corruption reported"] > 900, counts  # nearly every flip hits sealed content
    print(counts)


def test_truncating_the_journal_anywhere_resumes_with_the_right_results(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = _flip_flow(calls)
    pristine = tmp_path / "pristine"
    expected = _outcome(flow, pristine)
    data = (pristine / "flips" / "flips" / "journal.jsonl").read_bytes()
    (pristine / "flips" / "flips" / "snapshot.json").unlink()
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(len(data)), 60)):
        state = tmp_path / "cut"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(pristine, state)
        (state / "flips" / "flips" / "journal.jsonl").write_bytes(data[:cut])
        assert _outcome(flow, state) == expected, cut


def test_the_journal_of_a_resumed_legacy_run_mixes_unsealed_then_sealed_lines(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    flow = _flip_flow(calls)
    expected = _outcome(flow, tmp_path)
    journal = tmp_path / "flips" / "flips" / "journal.jsonl"
    _rewrite(journal, lambda rec: rec.pop("mac", None), sealed=False)  # as flowkit 0.1 wrote it
    (journal.parent / "snapshot.json").unlink()
    # legacy pickles were not signed: those steps re-run once, the rest is restored
    n = len(calls)
    assert _outcome(flow, tmp_path) == expected
    assert sorted(calls[n:]) == ["b", "d"]
    assert _outcome(flow, tmp_path) == expected
    assert sorted(calls[n + 2 :]) == ["d"]  # now signed, and the file mixes both kinds of line
    lines = journal.read_bytes().splitlines()
    assert not parse_line(lines[0], sealed=False)[1] and parse_line(lines[-1], sealed=True)[1]


def test_every_kind_of_record_a_run_writes_is_in_the_vocabulary(tmp_path: Path) -> None:
    flow = Flow("vocab")
    tries = {"n": 0}

    @flow.step(retries=1, backoff=0)
    def flaky() -> int:
        tries["n"] += 1
        if tries["n"] == 1:
            raise ConnectionError("once")
        return 1

    @flow.step(matrix={"k": [1, 2]})
    def fan(k: int, flaky: int) -> int:
        return k + flaky

    @flow.step(when=lambda flaky: flaky > 5)
    def never(flaky: int) -> int:
        return flaky

    @flow.step(when=lambda flaky: 1 / 0)
    def bad_condition(flaky: int) -> int:
        return flaky

    @flow.step(timeout=0.05)
    def slow() -> None:
        import time

        time.sleep(1)

    @flow.step()
    def blocked(slow: None) -> None:
        return None

    @flow.step()
    def boom() -> None:
        raise ValueError("boom")

    flow.run(state_dir=tmp_path, fail_fast=False)
    flow.run(state_dir=tmp_path, fail_fast=False)
    lines = (tmp_path / "vocab" / "vocab" / "journal.jsonl").read_bytes().splitlines()
    records = [parse_line(line, sealed=True)[0] for line in lines]
    assert {r["ev"] for r in records} == {"run", "start", "done", "retry", "cached", "skip", "end"}
    statuses = {r["status"] for r in records if r["ev"] == "done"}
    assert statuses == {"succeeded", "failed", "timed_out", "skipped"}
    assert any("instances" in r for r in records), "a gathered fan-out record"


def test_a_key_file_readable_by_others_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    key_path().parent.mkdir()
    key_path().write_text("a" * 64 + "\n")
    key_path().chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        key = secret_key()
    assert key == secret_key() and "chmod 600" in caplog.text and "0o644" in caplog.text


def test_runs_does_not_trust_the_snapshot_of_a_journal_edited_in_place(tmp_path: Path) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:trust")
    journal = _run_dir(tmp_path) / "journal.jsonl"
    data = journal.read_bytes()
    journal.write_bytes(data.replace(b'"out":24706', b'"out":94706'))  # same size
    os.utime(journal, ns=(0, journal.stat().st_mtime_ns + 1000))
    runs = _flowkit(tmp_path, "runs", "pipe.py:trust")
    assert runs.returncode == 0 and "corrupt" in runs.stdout, runs.stdout


def test_a_resumed_format_1_journal_gets_a_format_2_header_and_stays_readable(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    flow = _flip_flow(calls)
    expected = _outcome(flow, tmp_path)
    journal = tmp_path / "flips" / "flips" / "journal.jsonl"

    def as_format_1(rec: dict[str, Any]) -> None:
        rec.pop("mac", None)
        if rec["ev"] == "run":
            rec["format"] = 1

    _rewrite(journal, as_format_1, sealed=False)
    (journal.parent / "snapshot.json").unlink()
    assert _outcome(flow, tmp_path) == expected
    headers = [r for r in _records(journal) if r["ev"] == "run"]
    assert [h["format"] for h in headers] == [1, FORMAT]
