"""Outputs stored by content (one object per distinct content, shared by a flow's runs), the
shared cache (results reused across runs by cache key), and what both do with damaged state."""

from __future__ import annotations

import logging
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import run_flowkit

from flowkit import Flow, FlowDefinitionError, InvalidStepOptionError, Status
from flowkit.reclaim import find_orphans, find_unused_objects
from flowkit.records import seal
from flowkit.secret import sign
from flowkit.shared import SharedCache
from flowkit.store import RunStore


def _objects(state: Path, flow: str) -> list[Path]:
    return sorted((state / flow / "objects").glob("*/*"))


def _rewrite_journal(store: RunStore, edit: Any) -> None:
    lines = []
    for line in store.journal_path.read_bytes().splitlines():
        rec = orjson.loads(line)
        rec.pop("crc", None)
        edit(rec)
        lines.append(seal(rec))
    store.journal_path.write_bytes(b"".join(lines))
    (store.dir / "snapshot.json").unlink(missing_ok=True)


# --- stored once ----------------------------------------------------------------------------------


def _models(calls: list[str]) -> Flow:
    flow = Flow("models")

    @flow.step(matrix={"c": [1, 2, 3, 4]})
    def fit(c: int) -> tuple[str, bytes]:
        calls.append(f"fit{c}")
        return ("model", bytes(20_000))  # equal bytes for every c

    @flow.step()
    def best(fit: list[tuple[str, bytes]]) -> tuple[str, bytes]:
        return fit[0]

    @flow.step()
    def winner(best: tuple[str, bytes]) -> tuple[str, bytes]:
        return best  # the same model, returned by a second step

    return flow


def test_equal_outputs_are_stored_once_and_restored_for_every_step(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = _models(calls)
    assert flow.run(state_dir=tmp_path).ok
    (only,) = _objects(tmp_path, "models")  # 4 fits, best, winner: one file
    assert only.suffix == ".pkl" and 20_000 < only.stat().st_size < 21_000
    store = flow.store(state_dir=tmp_path)
    steps = store.load().steps
    assert {store.file_of(steps[n]) for n in ("fit[c=1]", "fit[c=4]", "best", "winner")} == {only}
    assert not (store.dir / "outputs").exists()

    again = flow.run(state_dir=tmp_path, rerun=["fit[c=1]"])  # an instance, named literally
    assert again["fit[c=1]"].status is Status.SUCCEEDED
    assert again["fit[c=2]"].status is Status.CACHED
    assert again["winner"].status is Status.CACHED  # fit[c=1] re-ran to equal bytes
    assert again["winner"].output == ("model", bytes(20_000))
    assert _objects(tmp_path, "models") == [only]
    assert calls.count("fit1") == 2 and calls.count("fit2") == 1


def test_fresh_moves_no_output_aside_and_keeps_one_generation(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = _models(calls)
    flow.run(state_dir=tmp_path)
    objects = _objects(tmp_path, "models")
    for _ in range(2):
        assert flow.run(state_dir=tmp_path, fresh=True).ok
    assert _objects(tmp_path, "models") == objects  # nothing copied, nothing duplicated
    (previous,) = (tmp_path / "models").glob("*.previous")  # one generation
    assert (previous / "journal.jsonl").is_file() and not (previous / "outputs").exists()
    kept = sum(f.stat().st_size for f in previous.rglob("*") if f.is_file())
    assert kept < 20_000, "the .previous run holds no copy of the outputs"
    assert calls.count("fit1") == 3


def test_objects_used_only_by_previous_are_kept_and_the_rest_reclaimed(tmp_path: Path) -> None:
    value = {"n": 1}
    flow = Flow("gen")

    @flow.step()
    def make() -> frozenset[int]:
        return frozenset(range(value["n"] * 1000))

    flow.run(state_dir=tmp_path)
    value["n"] = 2
    flow.run(state_dir=tmp_path, fresh=True)  # .previous still names the first object
    value["n"] = 3
    flow.run(state_dir=tmp_path, rerun=["make"])  # the second one is named by nothing now
    assert len(_objects(tmp_path, "gen")) == 3
    unused = find_unused_objects(flow.graph(), tmp_path, "gen")
    assert unused.held is None and len(unused.files) == 1
    assert unused.delete(since=float("inf")) == (1, unused.size)
    store = flow.store(state_dir=tmp_path)
    previous = RunStore(tmp_path, "gen", "gen.previous")
    assert set(_objects(tmp_path, "gen")) == {
        store.file_of(store.load().steps["make"]),
        previous.file_of(previous.load().steps["make"]),
    }


def test_an_object_reused_during_the_sweep_is_not_deleted(tmp_path: Path) -> None:
    value = {"n": 1}
    flow = Flow("race")

    @flow.step()
    def make() -> frozenset[int]:
        return frozenset(range(value["n"] * 1000))

    flow.run(state_dir=tmp_path)
    (first,) = _objects(tmp_path, "race")
    value["n"] = 2
    flow.run(state_dir=tmp_path, rerun=["make"])
    since = time.time()  # the sweep starts
    unused = find_unused_objects(flow.graph(), tmp_path, "race")
    assert [p for p, _ in unused.files] == [first]
    value["n"] = 1
    flow.run(state_dir=tmp_path, run_id="other")  # meanwhile, a run stores the same bytes
    assert unused.delete(since) == (0, 0)
    assert first.exists()


# --- runs written before the object store ----------------------------------------------------


def test_a_run_written_before_the_object_store_resumes_from_its_outputs_folder(
    tmp_path: Path,
) -> None:
    state = {"fail": True}
    calls: list[str] = []
    flow = Flow("legacy")

    @flow.step()
    def make() -> frozenset[int]:
        calls.append("make")
        return frozenset({1, 2, 3})

    @flow.step()
    def use(make: frozenset[int]) -> int:
        if state["fail"]:
            raise RuntimeError("crash")
        return sum(make)

    assert not flow.run(state_dir=tmp_path).ok
    store = flow.store(state_dir=tmp_path)
    (obj,) = _objects(tmp_path, "legacy")
    blob = obj.read_bytes()
    store.outputs.mkdir()
    (store.outputs / "make.pkl").write_bytes(blob)  # the layout flowkit wrote before
    obj.unlink()

    def to_old_layout(rec: dict[str, Any]) -> None:
        if rec.get("ev") == "done" and rec.get("step") == "make":
            del rec["obj"]
            rec["ref"], rec["mac"] = "make.pkl", sign("make.pkl", blob)

    _rewrite_journal(store, to_old_layout)

    state["fail"] = False
    result = flow.run(state_dir=tmp_path)
    assert result["make"].status is Status.CACHED and result["use"].output == 6
    assert calls == ["make"]
    assert find_orphans(flow.graph(), store, store.load()).files == ()  # still in use
    assert _objects(tmp_path, "legacy") == []


# --- damaged objects ----------------------------------------------------------------------------


def test_a_journal_naming_a_path_instead_of_an_object_is_not_followed(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = Flow("paths")

    @flow.step()
    def make() -> frozenset[int]:
        calls.append("make")
        return frozenset({1})

    flow.run(state_dir=tmp_path)
    store = flow.store(state_dir=tmp_path)

    def escape(rec: dict[str, Any]) -> None:
        if rec.get("ev") == "done":
            rec["obj"] = "../../../../etc/passwd"

    _rewrite_journal(store, escape)
    result = flow.run(state_dir=tmp_path)
    assert result["make"].status is Status.SUCCEEDED
    assert "names an object '../../../../etc/passwd' that is not one" in result["make"].reason
    assert calls == ["make", "make"]


# --- the shared cache -------------------------------------------------------------------------

NEWS = """
    from flowkit import Flow

    def build(flow):
        @flow.step()
        def fetch(n_pages: int = 22) -> tuple[int, ...]:
            with open("ran.txt", "a") as f:
                f.write(f"fetching {n_pages}\\n")
            return tuple(range(n_pages))

        @flow.step()
        def report(fetch: tuple[int, ...], day: str = "mon") -> str:
            with open("ran.txt", "a") as f:
                f.write(f"reporting {day}\\n")
            return f"{day}: {len(fetch)}"

        return flow

    news = build(Flow("news", cache="shared"))
    local = build(Flow("local"))
"""


@pytest.fixture
def news(tmp_path: Path) -> Path:
    (tmp_path / "news.py").write_text(textwrap.dedent(NEWS))
    return tmp_path


def _ran(work: Path) -> list[str]:
    """What the steps did since the last call (and forget it)."""
    path = work / "ran.txt"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    path.unlink()
    return lines


def test_a_shared_result_is_reused_by_another_run_and_explain_names_its_source(
    news: Path,
) -> None:
    first = run_flowkit(news, "run", "news.py:news", "--plain")
    assert first.returncode == 0, first.stderr
    assert _ran(news) == ["fetching 22", "reporting mon"]

    explain = run_flowkit(news, "explain", "news.py:news", "fetch", "--param", "day=tue")
    assert explain.stdout.strip() == (
        "fetch: cached: same key as step 'fetch' in run news (shared cache)."
    ), explain.stdout + explain.stderr

    tue = run_flowkit(news, "run", "news.py:news", "--plain", "--param", "day=tue")
    assert tue.returncode == 0, tue.stderr
    assert "[CACHED]    fetch" in tue.stdout
    assert _ran(news) == ["reporting tue"]
    status = run_flowkit(news, "status", "news.py:news", "--param", "day=tue")
    (row,) = [x for x in status.stdout.splitlines() if x.startswith("fetch ")]
    assert row.split()[1] == "cached", status.stdout

    # the result is now the run's own: its resume does not need the index
    (news / ".flowkit" / "news" / "cache.jsonl").unlink()
    again = run_flowkit(news, "run", "news.py:news", "--plain", "--param", "day=tue")
    assert again.returncode == 0 and _ran(news) == []

    forced = run_flowkit(
        news, "run", "news.py:news", "--plain", "--param", "day=wed", "--rerun", "fetch"
    )
    assert "--rerun" in forced.stdout and _ran(news) == ["fetching 22", "reporting wed"]


def test_per_run_caching_stays_the_default(news: Path) -> None:
    assert run_flowkit(news, "run", "news.py:local").returncode == 0
    run_flowkit(news, "run", "news.py:local", "--plain", "--param", "day=tue")
    assert _ran(news) == ["fetching 22", "reporting mon", "fetching 22", "reporting tue"]
    assert not (news / ".flowkit" / "local" / "cache.jsonl").exists()


def test_params_equal_to_their_defaults_name_the_default_run(news: Path) -> None:
    flow = Flow("ids")

    @flow.step()
    def fetch(n_pages: int = 22) -> int:
        return n_pages

    assert flow.run_id({"n_pages": 22}) == flow.run_id() == "ids"
    assert flow.run_id({"n_pages": "22"}) == "ids"  # as given on the command line
    assert flow.run_id({"n_pages": 23}) != "ids"
    assert run_flowkit(news, "run", "news.py:local").returncode == 0
    same = run_flowkit(news, "run", "news.py:local", "--plain", "--param", "n_pages=22")
    assert "run local:" in same.stdout and "2 cached" in same.stdout, same.stdout


def _shared_flow(calls: list[str]) -> Flow:
    flow = Flow("shared", cache="shared")

    @flow.step()
    def load() -> frozenset[int]:
        calls.append("load")
        return frozenset(range(5))

    @flow.step()
    def stamp(load: frozenset[int], day: str = "mon") -> str:
        return day

    return flow


def test_a_missing_shared_object_is_a_miss_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    _shared_flow(calls).run(state_dir=tmp_path)
    for obj in _objects(tmp_path, "shared"):
        obj.unlink()
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        result = _shared_flow(calls).run({"day": "tue"}, state_dir=tmp_path)
    assert result.ok and result["load"].status is Status.SUCCEEDED
    assert result["load"].reason == "new"
    assert "its shared cache entry is not used" in caplog.text and "is missing" in caplog.text
    assert calls == ["load", "load"]


def test_a_damaged_index_line_is_a_miss_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    _shared_flow(calls).run(state_dir=tmp_path)
    index = tmp_path / "shared" / "cache.jsonl"
    index.write_bytes(index.read_bytes().replace(b'"attempts":1', b'"attempts":7'))
    with caplog.at_level(logging.WARNING, logger="flowkit"):
        result = _shared_flow(calls).run({"day": "tue"}, state_dir=tmp_path)
    assert result["load"].status is Status.SUCCEEDED
    assert "shared cache index" in caplog.text and "checksum" in caplog.text
    index.write_bytes(b'{"key":"torn')  # an append cut short: ignored without a word
    caplog.clear()
    assert SharedCache(tmp_path / "shared").lookup("torn") is None
    assert caplog.text == ""


def test_an_untrusted_shared_pickle_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setenv("FLOWKIT_SECRET", "one user")
    _shared_flow(calls).run(state_dir=tmp_path)
    monkeypatch.setenv("FLOWKIT_SECRET", "another user")
    result = _shared_flow(calls).run({"day": "tue"}, state_dir=tmp_path)
    assert result["load"].status is Status.SUCCEEDED and calls == ["load", "load"]


def test_clean_orphans_compacts_the_index(tmp_path: Path) -> None:
    calls: list[str] = []
    _shared_flow(calls).run(state_dir=tmp_path)
    index = SharedCache(tmp_path / "shared")
    assert index.compact() == 0
    for obj in _objects(tmp_path, "shared"):
        obj.unlink()
    assert index.compact() == 1
    assert index.path.read_bytes().count(b"\n") == 1  # `stamp`'s inline value stays


def test_cache_option_values_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidStepOptionError, match="'shared'"):

        @Flow("bad").step(cache="yes")
        def f() -> None: ...

    with pytest.raises(FlowDefinitionError, match="cache='everywhere'"):
        Flow("bad", cache="everywhere")


GEN = """
    import os

    from flowkit import Flow

    gen = Flow("gen")

    @gen.step()
    def make(n: int = 1) -> tuple[int, bytes]:
        return n, bytes(30_000 + n)  # a tuple: an object of its own per n
"""


def test_deleting_a_run_deletes_the_objects_only_it_used_and_runs_counts_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "gen.py").write_text(textwrap.dedent(GEN))
    for n in ("1", "2"):
        assert run_flowkit(tmp_path, "run", "gen.py:gen", "--param", f"n={n}").returncode == 0
    assert run_flowkit(tmp_path, "run", "gen.py:gen", "--run-id", "copy").returncode == 0
    assert len(_objects(tmp_path / ".flowkit", "gen")) == 2  # n=1 twice: one object

    runs = run_flowkit(tmp_path, "runs", "gen.py:gen", "--json")
    sizes = {r["run_id"]: r["size"] for r in orjson.loads(runs.stdout)}
    assert len(sizes) == 3 and {"gen", "copy"} <= set(sizes)
    for size in sizes.values():
        assert 30_000 < size["run"] < 40_000 and size["previous"] == 0
        assert 60_000 < size["flow_objects"] < 61_000
    total = run_flowkit(tmp_path, "runs", "gen.py:gen").stdout.splitlines()[-1]
    assert total.startswith("3 run(s), ") and "(outputs stored once for all runs: 58.6 KB)" in total

    dropped = run_flowkit(tmp_path, "clean", "gen.py:gen", "--run-id", "copy")
    assert dropped.stdout.splitlines()[-1].startswith("deleted ")  # gen still uses n=1's
    assert len(_objects(tmp_path / ".flowkit", "gen")) == 2
    second = run_flowkit(tmp_path, "clean", "gen.py:gen", "--param", "n=2")
    assert second.stdout.splitlines()[-1] == "gen: deleted 1 unused object(s), 29.3 KB"
    assert len(_objects(tmp_path / ".flowkit", "gen")) == 1
    run_flowkit(tmp_path, "clean", "gen.py:gen", "--all")
    assert list((tmp_path / ".flowkit" / "gen").iterdir()) == []


WORKFLOW = """
    name: shy
    cache: shared
    tasks:
      fetch:
        command: echo fetched >> ran.txt
      report:
        command: echo reported >> ran.txt
        depends_on: [fetch]
        cache: true
"""


def test_cache_shared_in_a_workflow_file(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(WORKFLOW))
    assert run_flowkit(tmp_path, "run", "wf.yaml", "--run-id", "a").returncode == 0
    assert _ran(tmp_path) == ["fetched", "reported"]
    other = run_flowkit(tmp_path, "run", "wf.yaml", "--run-id", "b", "--plain")
    assert other.returncode == 0 and "[CACHED]    fetch" in other.stdout, other.stdout
    assert _ran(tmp_path) == ["reported"]  # `cache: true` on the task: its run's own only

    bad = textwrap.dedent(WORKFLOW).replace("cache: true", "cache: sometimes")
    (tmp_path / "wf.yaml").write_text(bad)
    refused = run_flowkit(tmp_path, "run", "wf.yaml", "--run-id", "c")
    assert refused.returncode == 2
    assert "cache='sometimes' is invalid: expected true, false or shared" in refused.stderr


def test_a_run_named_objects_does_not_take_the_object_store_folder(tmp_path: Path) -> None:
    flow = Flow("names")

    @flow.step()
    def make() -> frozenset[int]:
        return frozenset({1})

    assert flow.run(state_dir=tmp_path, run_id="objects").ok
    again = flow.run(state_dir=tmp_path, run_id="objects")
    assert again["make"].status is Status.CACHED
    assert len(_objects(tmp_path, "names")) == 1
    assert flow.store(state_dir=tmp_path, run_id="objects").dir.name.startswith("objects-")
