"""map_over instances are keyed by their item's value: only new items run."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import run_flowkit, run_flowkit_each

from flowkit import Flow, Status
from flowkit.fanout import item_label
from flowkit.records import seal


def _pages_flow(pages: list[Any], calls: list[Any]) -> Flow:
    flow = Flow("pages")

    @flow.step(code_version=repr(pages))  # the list is the step's "code"
    def listing() -> list[Any]:
        return list(pages)

    @flow.step(map_over="listing")
    def fetch(listing: Any) -> str:
        calls.append(listing)
        return f"<{listing}>"

    @flow.step()
    def combine(fetch: list[str]) -> str:
        return "".join(fetch)

    return flow


def test_inserting_an_item_at_the_front_reruns_exactly_that_instance(tmp_path: Path) -> None:
    calls: list[Any] = []
    first = _pages_flow(["p1", "p2", "p3"], calls).run(state_dir=tmp_path)
    assert first.ok and calls == ["p1", "p2", "p3"]
    calls.clear()
    second = _pages_flow(["p0", "p1", "p2", "p3"], calls).run(state_dir=tmp_path)
    assert calls == ["p0"]
    assert second["fetch[p0]"].status is Status.SUCCEEDED
    assert second["fetch[p0]"].reason == "new instance"
    assert second["fetch[p1]"].status is Status.CACHED
    assert second["combine"].output == "<p0><p1><p2><p3>"


def test_reordering_or_removing_items_reruns_no_instance(tmp_path: Path) -> None:
    calls: list[Any] = []
    _pages_flow([1, 2, 3], calls).run(state_dir=tmp_path)
    calls.clear()
    reordered = _pages_flow([3, 1, 2], calls).run(state_dir=tmp_path)
    assert calls == []
    assert reordered["combine"].output == "<3><1><2>"  # the gathered list follows the new order
    removed = _pages_flow([3, 2], calls).run(state_dir=tmp_path)
    assert calls == []
    assert removed["combine"].output == "<3><2>"


def test_instance_names_are_readable_labels_or_hashes_and_equal_items_are_numbered(
    tmp_path: Path,
) -> None:
    calls: list[Any] = []
    items = ["north", 7, "7", "New York", {"id": 1}, "north", None, 0.5]
    result = _pages_flow(items, calls).run(state_dir=tmp_path)
    names = sorted(n for n in result.steps if n.startswith("fetch["))
    hashed = item_label({"id": 1}, "0123456789abcdef")
    assert hashed == "#0123456789"
    assert [n for n in names if "#" in n] and all(
        len(n) == len("fetch[#0123456789]") for n in names if "#" in n
    )
    for name in [
        "fetch[north]",
        "fetch[7]",
        "fetch['7']",
        "fetch['New York']",
        "fetch[north~2]",
        "fetch[None]",
        "fetch[0.5]",
    ]:
        assert name in names
    assert result["combine"].output == "".join(f"<{i}>" for i in items)


def _rename_steps(journal: Path, names: dict[str, str]) -> None:
    """Rewrite a journal as an older flowkit would have named its instances (lines re-sealed)."""
    lines = []
    for raw in journal.read_bytes().splitlines():
        rec = orjson.loads(raw)
        rec.pop("crc", None)
        if rec.get("step") in names:
            rec["step"] = names[rec["step"]]
        lines.append(seal(rec))
    journal.write_bytes(b"".join(lines))
    for snapshot in journal.parent.glob("snapshot.json"):
        snapshot.unlink()  # its summary was of the journal as written


def test_an_old_journal_with_positional_instance_names_still_loads(tmp_path: Path) -> None:
    calls: list[Any] = []
    _pages_flow(["a", "b"], calls).run(state_dir=tmp_path)
    # what flowkit wrote before instances were keyed by value: fetch[0], fetch[1]
    (journal,) = tmp_path.glob("pages/*/journal.jsonl")
    _rename_steps(journal, {"fetch[a]": "fetch[0]", "fetch[b]": "fetch[1]"})
    calls.clear()
    again = _pages_flow(["a", "b"], calls).run(state_dir=tmp_path)
    assert again.ok and sorted(calls) == ["a", "b"]  # re-run once, under their new names
    assert again["fetch[a]"].reason == "new instance"
    assert again["combine"].output == "<a><b>"
    calls.clear()
    assert _pages_flow(["a", "b"], calls).run(state_dir=tmp_path).ok and calls == []


def test_an_old_positional_record_is_not_reused_for_another_item(tmp_path: Path) -> None:
    calls: list[Any] = []
    _pages_flow([5, 6], calls).run(state_dir=tmp_path)
    (journal,) = tmp_path.glob("pages/*/journal.jsonl")
    # an old journal's fetch[0] was item 5; now fetch[0] is the item 0
    _rename_steps(journal, {"fetch[5]": "fetch[0]"})
    calls.clear()
    again = _pages_flow([0, 6], calls).run(state_dir=tmp_path)
    assert calls == [0]
    assert again["fetch[0]"].reason == "new instance"
    assert again["combine"].output == "<0><6>"


def test_a_changed_parameter_default_is_named_as_such(tmp_path: Path) -> None:
    first = Flow("defaults")

    @first.step()
    def fetch(n_pages: int = 20) -> int:
        return n_pages

    first.run(state_dir=tmp_path)
    second = Flow("defaults")

    @second.step(name="fetch")
    def fetch_again(n_pages: int = 22) -> int:
        return n_pages

    result = second.run(state_dir=tmp_path)
    assert result["fetch"].reason == "parameter default changed: n_pages"
    assert result["fetch"].output == 22


PIPELINE = """
    import os

    from flowkit import Flow

    flow = Flow("crawl")

    @flow.step()
    def pages() -> list[str]:
        return ["home", "about", "contact"]

    @flow.step(map_over="pages")
    def fetch(pages: str) -> str:
        print("fetching", pages)
        if pages == os.environ.get("BROKEN"):
            raise ConnectionError(f"{pages} is down")
        return pages.upper()
"""


_flowkit = run_flowkit


@pytest.fixture()
def crawled(tmp_path: Path) -> Path:
    """A run where the instance for 'about' failed."""
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    args = ["run", "pipeline.py:flow", "--plain", "--continue-on-error"]
    done = _flowkit(tmp_path, *args, BROKEN="about")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fetch[about]" in done.stdout
    return tmp_path


def test_dry_run_names_the_instances_it_would_run(crawled: Path) -> None:
    done = _flowkit(crawled, "run", "pipeline.py:flow", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "run    fetch[about]  (failed before)" in done.stdout
    assert "fetch[home]" not in done.stdout  # cached instances are counted, not listed
    assert "(2 instance(s) cached)" in done.stdout


def test_explain_status_and_logs_accept_instance_labels(crawled: Path) -> None:
    done, cached, logs, status, wrong = run_flowkit_each(
        crawled,
        ["explain", "pipeline.py:flow", "fetch[about]"],
        ["explain", "pipeline.py:flow", "fetch[home]"],
        ["logs", "pipeline.py:flow", "fetch[about]"],
        ["status", "pipeline.py:flow"],
        ["explain", "pipeline.py:flow", "fetch[abuot]"],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "fetch[about]: would run — failed before."
    assert "Its last attempt failed: ConnectionError: about is down" in done.stdout
    assert cached.stdout.startswith("fetch[home]: cached")
    assert logs.returncode == 0 and "fetching about" in logs.stdout
    rows = [line.split()[:2] for line in status.stdout.splitlines()]
    assert ["fetch[about]", "failed"] in rows and ["fetch[home]", "succeeded"] in rows
    assert wrong.returncode == 2
    assert "Did you mean 'fetch[about]'?" in wrong.stderr
