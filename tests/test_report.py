"""The run report: ``render_html`` directly, the ``report`` command, and the page as headless
Chromium renders it (DOM after its script ran, and a screenshot).

The browser tests need Debian's ``chromium`` (CI installs it); they are skipped only when it is
not on PATH.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import flowkit_env

from flowkit import Flow
from flowkit.report import STATUSES, collect, render_html
from flowkit.store import LoadedState

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

# extract -> flaky (fails once, then succeeds) -> audit (order-only); extract -> broken (always
# fails) -> publish (skipped); extract -> stamp (cache=False: runs on every run).
PIPELINE = """\
from __future__ import annotations

from pathlib import Path

from flowkit import Flow

demo = Flow("demo")


@demo.step()
def extract() -> int:
    return 1


@demo.step(retries=2, backoff=0)
def flaky(extract: int) -> int:
    counter = Path("flaky.count")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n < 2:
        raise ConnectionError("try again")
    return extract + 1


@demo.step()
def broken(extract: int) -> int:
    raise ValueError("bad <b>input</b> & 'quotes'")


@demo.step()
def publish(broken: int) -> int:
    return broken


@demo.step(depends_on=["flaky"])
def audit() -> str:
    return "ok"


@demo.step(cache=False)
def stamp(extract: int) -> int:
    return extract
"""

STEPS = {"extract", "flaky", "broken", "publish", "audit", "stamp"}


# --- helpers ------------------------------------------------------------------------------------


def flowkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        cwd=cwd,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def dump_dom(page: Path, profile: Path, fragment: str = "") -> Dom:
    """The DOM of ``page`` after Chromium loaded it and ran its script."""
    proc = chromium("--dump-dom", page.resolve().as_uri() + fragment, profile=profile)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Dom.parse(proc.stdout)
    assert dom.one(tag="body").attrs.get("data-ready") == "1", "the page's script did not run"
    return dom


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], ancestors: tuple[Element, ...]) -> None:
        self.tag, self.attrs, self.ancestors = tag, attrs, ancestors
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def inside(self, id_: str) -> bool:
        return any(a.attrs.get("id") == id_ for a in self.ancestors)


class Dom(HTMLParser):
    """A flat list of the elements of an HTML document, each with its ancestors and text."""

    VOID = frozenset({"meta", "input", "br", "img", "link", "hr", "col", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.stack: list[Element] = []

    @classmethod
    def parse(cls, text: str) -> Dom:
        dom = cls()
        dom.feed(text)
        dom.close()
        return dom

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = Element(tag, {k: v or "" for k, v in attrs}, tuple(self.stack))
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}, tuple(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        for el in self.stack:
            el.parts.append(data)

    def find(
        self,
        tag: str | None = None,
        cls: str | None = None,
        inside: str | None = None,
        **attrs: str,
    ) -> list[Element]:
        return [
            el
            for el in self.elements
            if (tag is None or el.tag == tag)
            and (cls is None or cls in el.classes)
            and (inside is None or el.inside(inside))
            and all(el.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(
        self,
        tag: str | None = None,
        cls: str | None = None,
        inside: str | None = None,
        **attrs: str,
    ) -> Element:
        found = self.find(tag, cls, inside, **attrs)
        assert len(found) == 1, f"expected one {tag}.{cls} {attrs}, found {len(found)}"
        return found[0]

    def cell(self, step: str, cls: str) -> Element:
        """The ``td.cls`` cell of the table row of ``step``."""
        row = self.one(tag="tr", data_step=step)
        (td,) = [td for td in self.find(tag="td", cls=cls) if row in td.ancestors]
        return td

    def row_statuses(self) -> dict[str, str]:
        return {
            tr.attrs["data-step"]: tr.attrs["data-status"]
            for tr in self.find(tag="tr", inside="step-table")
            if "data-step" in tr.attrs
        }


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG: (width, height, rows of RGB(A) bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, bpp = 8, [], 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    rows: list[bytes] = []
    for y in range(height):
        off = y * (stride + 1)
        kind_ = raw[off]
        line = bytearray(raw[off + 1 : off + 1 + stride])
        if kind_ == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind_ == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif kind_ == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + prev[i]) // 2) & 255
        elif kind_ == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


# --- the demo run, twice, reported through the CLI ---------------------------------------------


@dataclass
class DemoRuns:
    folder: Path
    first_html: Path
    second_html: Path
    first_text: str
    second_text: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRuns:
    folder = tmp_path_factory.mktemp("report-demo")
    (folder / "pipe.py").write_text(PIPELINE)
    run1 = flowkit("run", "pipe:demo", "--continue-on-error", cwd=folder)
    assert run1.returncode == 1, run1.stderr
    first = flowkit("report", "pipe:demo", "--html", "first.html", cwd=folder)
    assert first.returncode == 0, first.stderr
    assert Path(first.stdout.strip()) == (folder / "first.html").resolve()
    text1 = flowkit("report", "pipe:demo", cwd=folder)
    run2 = flowkit("run", "pipe:demo", "--continue-on-error", "--workers", "2", cwd=folder)
    assert run2.returncode == 1, run2.stderr
    second = flowkit("report", "pipe:demo", "--html", "second.html", cwd=folder)
    assert second.returncode == 0, second.stderr
    text2 = flowkit("report", "pipe:demo", cwd=folder)
    assert text1.returncode == text2.returncode == 0
    return DemoRuns(
        folder, folder / "first.html", folder / "second.html", text1.stdout, text2.stdout
    )


def test_report_of_a_run_without_state_exits_2(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text(PIPELINE)
    proc = flowkit("report", "pipe:demo", "--html", "out.html", cwd=tmp_path)
    assert proc.returncode == 2
    assert "run demo of flow demo has no state" in proc.stderr
    assert not (tmp_path / "out.html").exists()


def test_text_report_names_failures_skips_and_cached_counts(demo: DemoRuns) -> None:
    first = demo.first_text.splitlines()
    assert first[0] == "Flow demo, run demo: failed"
    assert "  steps: 4 succeeded, 1 failed, 1 upstream_failed" in first
    assert "  FAILED broken: ValueError: bad <b>input</b> & 'quotes'" in first
    assert "  upstream_failed publish: upstream 'broken' failed" in first
    second = demo.second_text.splitlines()
    assert "  steps: 1 succeeded, 3 cached, 1 failed, 1 upstream_failed" in second


@needs_chromium
def test_first_run_page_in_chromium(demo: DemoRuns, tmp_path: Path) -> None:
    dom = dump_dom(demo.first_html, tmp_path / "profile")
    assert dom.one(id="flow-name").text == "demo"
    assert dom.one(id="run-status").text == "failed"
    expected = {
        "extract": "succeeded",
        "flaky": "succeeded",
        "stamp": "succeeded",
        "audit": "succeeded",
        "broken": "failed",
        "publish": "upstream_failed",
    }
    assert dom.row_statuses() == expected
    # the graph: one node per step, coloured by status; four data edges and one dashed order edge
    nodes = dom.find(tag="g", cls="node", inside="dag")
    assert {n.attrs["data-step"]: n.attrs["data-status"] for n in nodes} == expected
    assert len(nodes) == len(STEPS)
    assert all(f"st-{n.attrs['data-status']}" in n.classes for n in nodes)
    edges = {
        (p.attrs["data-from"], p.attrs["data-to"], "order" in p.classes)
        for p in dom.find(tag="path", cls="edge", inside="dag")
    }
    assert edges == {
        ("extract", "flaky", False),
        ("extract", "broken", False),
        ("extract", "stamp", False),
        ("broken", "publish", False),
        ("flaky", "audit", True),
    }
    # the timeline: every executed step has a bar, the skipped one has none
    bars = {b.attrs["data-step"] for b in dom.find(tag="rect", cls="bar", inside="gantt")}
    assert bars == STEPS - {"publish"}
    # the table: retried attempts, the error escaped (text, not markup), the traceback excerpt
    assert dom.cell("flaky", "attempts").text == "2"
    assert dom.cell("extract", "attempts").text == "1"
    error = dom.cell("broken", "error")
    assert "ValueError: bad <b>input</b> & 'quotes'" in error.text
    assert not dom.find(tag="b", inside="step-table")
    more = dom.one(tag="tr", data_for=dom.one(tag="tr", data_step="broken").attrs["id"])
    tb = next(p for p in dom.find(tag="pre") if more in p.ancestors)  # the row under its own
    assert "Traceback" in tb.text and 'raise ValueError("bad <b>input</b>' in tb.text
    publish = dom.one(tag="tr", data_step="publish")
    assert "upstream 'broken' failed" in publish.text


@needs_chromium
def test_second_run_page_shows_cached_steps(demo: DemoRuns, tmp_path: Path) -> None:
    dom = dump_dom(demo.second_html, tmp_path / "profile")
    expected = {
        "extract": "cached",
        "flaky": "cached",
        "audit": "cached",
        "stamp": "succeeded",
        "broken": "failed",
        "publish": "upstream_failed",
    }
    assert dom.row_statuses() == expected
    nodes = dom.find(tag="g", cls="node", inside="dag")
    assert {n.attrs["data-step"]: n.attrs["data-status"] for n in nodes} == expected
    chips = [b.text for b in dom.find(tag="button", inside="counts")]
    assert chips == ["1 succeeded", "3 cached", "1 failed", "1 upstream_failed", "all"]
    # only what ran in the latest session is on the timeline
    bars = {b.attrs["data-step"] for b in dom.find(tag="rect", cls="bar", inside="gantt")}
    assert bars == {"stamp", "broken"}
    assert "unchanged" in dom.one(tag="tr", data_step="flaky").text


@needs_chromium
def test_status_in_the_url_filters_the_table(demo: DemoRuns, tmp_path: Path) -> None:
    dom = dump_dom(demo.second_html, tmp_path / "profile", "#status=cached")
    rows = dom.find(tag="tr", inside="step-table")
    visible = {
        r.attrs["data-step"] for r in rows if "data-step" in r.attrs and "hidden" not in r.attrs
    }
    assert visible == {"extract", "flaky", "audit"}
    assert dom.one(id="shown").text == "3 of 6 steps shown"


@needs_chromium
def test_screenshot_is_rendered_with_status_colours(demo: DemoRuns, tmp_path: Path) -> None:
    png = tmp_path / "shot.png"
    proc = chromium(
        f"--screenshot={png}",
        "--window-size=1280,900",
        "--hide-scrollbars",
        demo.second_html.resolve().as_uri(),
        profile=tmp_path / "profile",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = png.read_bytes()
    assert len(data) > 10_000
    width, height, rows = png_pixels(data)
    assert (width, height) == (1280, 900)
    bpp = len(rows[0]) // width
    colours = {row[i : i + 3] for row in rows[::3] for i in range(0, len(row), bpp * 3)}
    assert len(colours) > 20, "the screenshot is (nearly) blank"

    def has(colour: str) -> bool:
        want = hex_rgb(colour)
        return any(all(abs(c[k] - want[k]) <= 3 for k in range(3)) for c in colours)

    # the cached, failed and succeeded fills of the graph's nodes are on screen
    for status in ("cached", "failed", "succeeded"):
        assert has(STATUSES[status]), f"no {status} colour {STATUSES[status]} in the screenshot"


# --- render_html directly -----------------------------------------------------------------------


def _fn(value: int) -> Callable[[], int]:
    def fn() -> int:
        return value

    return fn


def _flow(name: str, deps: dict[str, list[str]]) -> Flow:
    flow = Flow(name)
    for i, (step_name, ups) in enumerate(deps.items()):
        flow.step(name=step_name, depends_on=ups)(_fn(i))
    return flow


def _state(records: list[dict[str, Any]]) -> LoadedState:
    state = LoadedState()
    for rec in records:
        state.apply(rec)
    return state


def _done(step: str, status: str, t: float, **extra: Any) -> dict[str, Any]:
    rec = {
        "ev": "done",
        "step": step,
        "status": status,
        "attempts": 1,
        "dur": 0.5,
        "start": t,
        "end": t + 0.5,
        "cpu": 0.25,
        "worker": "7:flowkit_0",
        "reason": "new",
    }
    rec.update(extra)
    return rec


T0 = 1_700_000_000.0


def test_render_html_escapes_every_user_string() -> None:
    evil = "<script>alert(1)</script>"
    flow = _flow("f<&>", {evil: [], "after": [evil]})
    state = _state(
        [
            {"ev": "run", "run_id": "r<1>", "params": {"q": "<i>x</i>"}, "time": T0},
            _done(evil, "succeeded", T0 + 1, worker="<w>"),
            _done(
                "after",
                "failed",
                T0 + 2,
                reason="why & <how>",
                error={
                    "type": "E<T>",
                    "message": "<img src=x onerror=alert(2)>",
                    "traceback": "Traceback:\n  <frame>\nE<T>: boom",
                },
            ),
            {"ev": "end", "status": "failed", "time": T0 + 3},
        ]
    )
    page = render_html(flow, state)
    assert page.count("<script") == 1  # the page's own script only
    assert "alert(1)" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for raw in ("<img", "<i>", "<w>", "<how>", "<frame>", "E<T>", "r<1>", "f<&>"):
        assert raw not in page, raw
    dom = Dom.parse(page)
    assert {n.attrs["data-step"] for n in dom.find(tag="g", cls="node")} == {evil, "after"}
    assert dom.one(tag="tr", data_step=evil).attrs["data-status"] == "succeeded"
    assert "<img src=x onerror=alert(2)>" in dom.cell("after", "error").text
    assert dom.one(id="flow-name").text == "f<&>"
    assert dom.one(id="run-id").text == "r<1>"


def test_render_html_shows_every_status() -> None:
    names = ["ok", "reused", "bad", "slow", "below", "skip", "cut", "todo"]
    flow = _flow("all", {n: [] for n in names})
    records: list[dict[str, Any]] = [
        {"ev": "run", "run_id": "r", "params": {}, "time": T0},
        _done("reused", "succeeded", T0 + 1),
        {"ev": "end", "status": "succeeded", "time": T0 + 2},
        {"ev": "run", "run_id": "r", "params": {}, "time": T0 + 10},
        {"ev": "cached", "step": "reused"},
        _done("ok", "succeeded", T0 + 11),
        _done("bad", "failed", T0 + 12, error={"type": "KeyError", "message": "'k'"}),
        _done("slow", "timed_out", T0 + 13),
        # a journal of this version says upstream_failed; one written before it only said skip
        {
            "ev": "skip",
            "step": "below",
            "reason": "upstream 'bad' failed",
            "status": "upstream_failed",
        },
        {"ev": "skip", "step": "skip", "reason": "upstream 'x' failed"},
        {"ev": "start", "step": "cut", "attempt": 1, "time": T0 + 14},
    ]
    expected = {
        "ok": "succeeded",
        "reused": "cached",
        "bad": "failed",
        "slow": "timed_out",
        "below": "upstream_failed",
        "skip": "skipped",
        "cut": "interrupted",
        "todo": "pending",
    }
    dom = Dom.parse(render_html(flow, _state(records)))
    assert dom.row_statuses() == expected
    nodes = {n.attrs["data-step"]: n for n in dom.find(tag="g", cls="node", inside="dag")}
    assert {k: v.attrs["data-status"] for k, v in nodes.items()} == expected
    assert all(f"st-{expected[k]}" in v.classes for k, v in nodes.items())
    assert dom.one(id="run-status").text == "interrupted"  # no end record after the 2nd start
    # the cached step ran in the first session: it is not on the latest session's timeline
    bars = {b.attrs["data-step"] for b in dom.find(tag="rect", cls="bar")}
    assert bars == {"ok", "bad", "slow", "cut"}
    # while a process holds the run, a started step is running
    live = Dom.parse(render_html(flow, _state(records), running=True))
    assert live.row_statuses()["cut"] == "running"
    assert live.one(id="run-status").text == "running"
    assert set(STATUSES) == {*expected.values(), "running", "retrying"}  # tests/test_stepview.py


def test_report_of_a_real_run_matches_its_result(tmp_path: Path) -> None:
    flow = Flow("small")

    @flow.step()
    def a() -> int:
        return 1

    @flow.step()
    def b(a: int) -> int:
        raise RuntimeError("no")

    result = flow.run(state_dir=tmp_path)
    report = collect(flow, flow.load_state(state_dir=tmp_path))
    assert report.run_id == result.run_id
    assert report.status == result.status.value == "failed"
    assert report.counts() == result.counts()
    assert report.sessions == 1
    row_a = report.steps[0]
    assert (row_a.name, row_a.attempts, row_a.worker is not None) == ("a", 1, True)
    assert report.steps[1].error_type == "RuntimeError"


def test_fan_out_instances_get_rows_and_bars_but_no_graph_nodes(tmp_path: Path) -> None:
    flow = Flow("fan")

    @flow.step(matrix={"k": [1, 2, 3]})
    def load(k: int) -> int:
        return k * 10

    @flow.step()
    def total(load: list[int]) -> int:
        return sum(load)

    names = ["load", "load[k=1]", "load[k=2]", "load[k=3]", "total"]
    ran = {"load[k=1]", "load[k=2]", "load[k=3]", "total"}  # the gather itself has no timing
    for status, bars in (("succeeded", ran), ("cached", set())):
        result = flow.run(state_dir=tmp_path)
        assert result.ok
        state = flow.load_state(state_dir=tmp_path)
        report = collect(flow, state)
        assert [r.name for r in report.steps] == names
        assert [r.parent for r in report.steps] == [None, "load", "load", "load", None]
        assert {r.status for r in report.steps} == {status}
        assert report.counts() == result.counts()
        dom = Dom.parse(render_html(flow, state))
        assert {n.attrs["data-step"] for n in dom.find(tag="g", cls="node")} == {"load", "total"}
        assert dom.row_statuses() == dict.fromkeys(names, status)
        assert {b.attrs["data-step"] for b in dom.find(tag="rect", cls="bar")} == bars
        assert dom.one(tag="tr", data_step="load[k=2]").attrs["data-parent"] == "load"


def test_page_is_self_contained() -> None:
    flow = _flow("solo", {"a": [], "b": ["a"]})
    page = render_html(
        flow, _state([{"ev": "run", "run_id": "r", "time": T0}, _done("a", "succeeded", T0)])
    )
    assert re.search(r"\bsrc\s*=", page) is None
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))
    for needle in ("<link", "@import", "url(http", "http://", "https://"):
        assert needle not in page, needle


def _big_flow(n: int = 2000, width: int = 100) -> tuple[Flow, LoadedState]:
    """``n`` steps in ``n / width`` layers of ``width`` (each with two upstreams in the last)."""
    deps: dict[str, list[str]] = {}
    for i in range(n):
        layer, k = divmod(i, width)
        ups = (
            []
            if layer == 0
            else [f"s{(layer - 1) * width + k}", f"s{(layer - 1) * width + (k * 7 + 3) % width}"]
        )
        deps[f"s{i}"] = sorted(set(ups))
    flow = _flow("big", deps)
    records: list[dict[str, Any]] = [{"ev": "run", "run_id": "big", "time": T0}]
    for i in range(n):
        records.append(
            _done(
                f"s{i}",
                "failed" if i % 97 == 0 else "succeeded",
                T0 + i * 0.01,
                worker=f"9:flowkit_{i % 8}",
                end=T0 + i * 0.01 + 0.008,
                dur=0.008,
                error={"type": "E", "message": "m", "traceback": "  File x.py, line 1\n" * 2000}
                if i % 97 == 0
                else None,
            )
        )
    records.append({"ev": "end", "status": "failed", "time": T0 + n * 0.01 + 1})
    return flow, _state(records)


@pytest.fixture(scope="module")
def big_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    flow, state = _big_flow()
    t = time.perf_counter()
    page = render_html(flow, state)
    took = time.perf_counter() - t
    path = tmp_path_factory.mktemp("big") / "big.html"
    path.write_text(page, encoding="utf-8")
    yield path, took


def test_two_thousand_steps_render_quickly_into_a_bounded_drawing(
    big_page: tuple[Path, float],
) -> None:
    path, took = big_page
    assert took < 5.0
    page = path.read_text(encoding="utf-8")
    assert len(page) < 6_000_000
    dom = Dom.parse(page)
    assert len(dom.find(tag="g", cls="node", inside="dag")) == 2000
    assert len(dom.row_statuses()) == 2000
    svg = dom.one(tag="svg", id="dag")
    # tiers of 100 wrap into sub-columns of 40: the drawing stays about 1,300 px high
    assert float(svg.attrs["height"]) <= 1400
    assert float(svg.attrs["width"]) < 20 * 3 * 240
    assert "scroll" in dom.one(id="graph-box").classes
    lanes = {g.attrs["data-worker"] for g in dom.find(tag="g", cls="lane")}
    assert lanes == {f"9:flowkit_{i}" for i in range(8)}
    # tracebacks are cut to an excerpt
    assert max(len(p.text) for p in dom.find(tag="pre")) < 4100


@needs_chromium
def test_two_thousand_steps_load_in_chromium(big_page: tuple[Path, float], tmp_path: Path) -> None:
    dom = dump_dom(big_page[0], tmp_path / "profile")
    assert len(dom.find(tag="g", cls="node", inside="dag")) == 2000
    assert dom.one(id="shown").text == "2000 of 2000 steps shown"


def test_report_and_status_show_each_retried_attempt_and_its_delay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowkit.cli import main
    from flowkit.loader import load_flow
    from flowkit.report import render_html

    marker = tmp_path / "calls"
    pipeline = tmp_path / "retried_pipeline.py"
    pipeline.write_text(
        "from pathlib import Path\n"
        "from flowkit import Flow\n"
        "flow = Flow('retried')\n"
        "@flow.step(retries=2, backoff=0.01)\n"
        "def flaky() -> int:\n"
        f"    calls = Path({str(marker)!r})\n"
        "    n = len(calls.read_text()) if calls.exists() else 0\n"
        "    calls.write_text('x' * (n + 1))\n"
        "    if n < 2:\n"
        "        raise ConnectionError(f'refused #{n + 1}')\n"
        "    return 1\n"
    )
    target = f"{pipeline}:flow"
    state_dir = str(tmp_path / "state")
    assert main(["run", target, "--state-dir", state_dir, "--plain"]) == 0
    flow = load_flow(target)
    html = render_html(flow, flow.load_state(state_dir=state_dir))
    assert "attempt 1: ConnectionError: refused #1; retried after 0.01s" in html
    assert "attempt 2: ConnectionError: refused #2; retried after 0.01s" in html
    capsys.readouterr()
    assert main(["status", target, "--state-dir", state_dir]) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("flaky"))
    assert "succeeded" in row and "retried 2x; last: ConnectionError: refused #2" in row
