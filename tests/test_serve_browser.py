"""``flowkit serve`` in a real headless Chromium (Playwright driving the system's browser).

One browser for the session and one server for this module, on a state folder the tests fill
with real runs: the runs list, a run page following a flow that runs in a subprocess (a step
turning running -> succeeded, a retry as a second bar after its wait, a log line appearing), a
failure's side panel, the token, and a 10,000-step run.

Skipped only when there is no Chromium (set ``FLOWKIT_CHROMIUM`` to use another binary).
``FLOWKIT_SCREENSHOTS=docs/img`` saves the guide's screenshots there.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import serveflows
from conftest import CHROMIUM, PYTHON, ROOT, TESTS, flowkit_env

from flowkit import Flow

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)

if Path(CHROMIUM).exists():
    from playwright.sync_api import Browser, Page

TOKEN = "browser-test-token"
# a function, not an expression: an expression would need eval, which the pages' CSP forbids
LOG_HAS = "text => document.getElementById('panel-log').textContent.includes(text)"
LIVE_LATENCY = 1.0  # seconds from a journal line to the page showing it


@dataclass
class Served:
    state: Path
    url: str  # http://127.0.0.1:PORT (no slash)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("served") / "state"
    state.mkdir()
    proc = subprocess.Popen(
        [PYTHON, "-m", "flowkit", "serve", "--state-dir", str(state), "--port", "0"],
        env=flowkit_env(FLOWKIT_SERVE_TOKEN=TOKEN),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("flowkit serve: http://127.0.0.1:"), line
    try:
        yield Served(state, line.split()[2].split("/?")[0])
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    """A fresh browser context that has visited the token link (so it holds the cookie)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
    assert pg.goto(f"{served.url}/?token={TOKEN}").status == 200  # type: ignore[union-attr]
    yield pg
    context.close()
    assert errors == []  # no script error, and nothing injected ran (no alert dialog)


def screenshot(pg: Page, name: str, tmp_path: Path) -> None:
    pg.screenshot(path=str(tmp_path / name), full_page=False)
    target = os.environ.get("FLOWKIT_SCREENSHOTS")
    if target:  # relative to the repository (tests run in their own working directory)
        pg.screenshot(path=str(ROOT / target / name), full_page=False)


def ready(pg: Page) -> None:
    pg.wait_for_selector("body[data-ready='1']", timeout=15_000)


def journal_record(path: Path, ev: str, step: str, attempt: int = 1) -> dict[str, object]:
    """Wait for the journal record ``ev`` of ``step`` (its ``attempt``-th such record)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            seen = 0
            for line in path.read_bytes().splitlines():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if rec.get("ev") == ev and rec.get("step") == step:
                    seen += 1
                    if seen == attempt:
                        return dict(rec)
        time.sleep(0.005)
    raise AssertionError(f"no {ev!r} record for {step!r} in {path}")


def shown_after(pg: Page, selector: str, since: object) -> float:
    """Seconds from ``since`` (a journal record's time) until ``selector`` is on the page, by
    the page's own clock (checked every 10 ms)."""
    shown = pg.wait_for_function(
        "s => document.querySelector(s) ? Date.now() / 1000 : null",
        arg=selector,
        polling=10,
        timeout=10_000,
    ).json_value()
    return float(shown) - float(since)  # type: ignore[arg-type]


def daily() -> Flow:
    f = Flow("daily")

    @f.step()
    def load(day: str = "mon") -> str:
        return day

    return f


# --- the runs list ------------------------------------------------------------------------------


def test_runs_list_shows_runs_newest_first_filters_and_follows_new_runs(
    page: Page, served: Served, tmp_path: Path
) -> None:
    f = daily()
    f.run({"day": "mon"}, state_dir=served.state)
    time.sleep(0.01)
    f.run({"day": "tue"}, state_dir=served.state)
    page.goto(f"{served.url}/")
    ready(page)
    runs = page.locator("#runs tbody tr[data-flow='daily'] td.params").all_inner_texts()
    assert runs[:2] == ["day='tue'", "day='mon'"]
    page.fill("input[name=q]", "mon")
    page.press("input[name=q]", "Enter")
    ready(page)
    assert page.locator("#runs tbody tr[data-flow='daily']").count() == 1
    page.goto(f"{served.url}/?flow=daily")
    ready(page)
    f.run({"day": "wed"}, state_dir=served.state)  # the open list refreshes itself
    page.wait_for_selector("#runs td.params:text-is(\"day='wed'\")", timeout=5_000)


# --- a run, live --------------------------------------------------------------------------------


def test_run_page_follows_a_flow_running_in_another_process(
    page: Page, served: Served, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    cmd = [PYTHON, "-m", "flowkit", "run", f"{TESTS / 'serveflows.py'}:live"]
    cmd += ["--state-dir", str(served.state), "-p", f"gate={gate}", "--workers", "2"]
    proc = subprocess.Popen(cmd, env=flowkit_env(), stdout=subprocess.PIPE, text=True)
    try:
        run_id = serveflows.live.run_id({"gate": str(gate)})
        journal = served.state / "live" / run_id / "journal.jsonl"
        journal_record(journal, "start", "first")
        page.goto(f"{served.url}/runs/live/{run_id}")
        ready(page)
        page.wait_for_selector("#step-table tr[data-step='first'][data-status='running']")
        page.wait_for_selector("#dag g.node.st-running[data-step='first']")
        assert page.inner_text("#run-status") == "running"

        # running -> succeeded, within a second of the journal line
        (gate / "first").touch()
        done = journal_record(journal, "done", "first")
        lag_done = shown_after(page, "#dag g.node.st-succeeded[data-step='first']", done["end"])
        page.wait_for_selector("#step-table tr[data-step='first'][data-status='succeeded']")
        # the fan-out's instances appear as rows of their own, under their step, which the
        # graph shows running while they run
        page.wait_for_selector("#step-table tr.instance[data-status='running']")
        page.wait_for_selector("#dag g.node.st-running[data-step='spread']")
        (gate / "spread").touch()
        page.wait_for_selector("#dag g.node.st-succeeded[data-step='spread']")
        page.wait_for_selector("#step-table tr.instance[data-step='spread[3]']")
        assert page.locator("#step-table tr.instance").count() == 3

        # the retry: the first attempt's bar fails, a wait follows, then a second bar
        page.click("#step-table tr[data-step='flaky']")
        page.wait_for_selector("#panel:not([hidden])")
        (gate / "flaky-1").touch()
        page.wait_for_selector("#timeline-box rect.bar.st-failed[data-step='flaky']")
        page.wait_for_selector("#timeline-box rect.wait[data-step='flaky']")
        second = journal_record(journal, "start", "flaky", attempt=2)
        lag_retry = shown_after(
            page, "#timeline-box rect.bar[data-step='flaky'][data-attempt='2']", second["time"]
        )
        bars = page.locator("#timeline-box rect.bar[data-step='flaky']")
        assert bars.count() == 2
        assert "ConnectionError: the <server> went away" in page.inner_text("#panel-attempts")

        # a log line appearing in the side panel while the attempt runs
        page.wait_for_function(
            LOG_HAS, arg="flaky: second attempt under way", polling=20, timeout=5_000
        )
        screenshot(page, "run-live.png", tmp_path)
        assert lag_done < LIVE_LATENCY + 0.25, lag_done
        assert lag_retry < LIVE_LATENCY + 0.25, lag_retry
        print(f"live latency: done {lag_done:.3f}s, retry bar {lag_retry:.3f}s")

        (gate / "flaky-2").touch()
        page.wait_for_selector("#run-status.st-succeeded", timeout=10_000)
        assert page.locator("#timeline-box rect.bar.st-running").count() == 0
    finally:
        for name in ("first", "flaky-1", "flaky-2", "spread"):
            (gate / name).touch()
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_failed_step_shows_its_error_traceback_and_log_as_text(
    page: Page, served: Served, tmp_path: Path
) -> None:
    serveflows.failing.run(state_dir=served.state)
    page.goto(f"{served.url}/runs/failing/failing")
    ready(page)
    page.click("#dag g.node[data-step='boom']")
    page.wait_for_selector("#panel-traceback")
    assert "bad <script>alert('x')</script> value" in page.inner_text("#panel-error")
    assert "Traceback" in page.inner_text("#panel-traceback")
    page.wait_for_function(LOG_HAS, arg="about to fail <b>loudly</b>", polling=20)
    assert page.locator("#panel b, #panel script").count() == 0  # text, never markup
    screenshot(page, "run-failed.png", tmp_path)
    # a link to the page with #step=NAME opens that step's panel
    page.goto(f"{served.url}/")
    page.goto(f"{served.url}/runs/failing/failing#step=boom")
    page.wait_for_selector("#panel:not([hidden]) #panel-traceback")
    assert page.inner_text("#panel-title") == "boom"
    page.click("#panel-link")
    page.wait_for_selector("#step-name")
    assert page.inner_text("#step-name") == "boom"
    assert "failed" in page.inner_text("#facts")
    assert "about to fail <b>loudly</b>" in page.inner_text("#log")


# --- the token ----------------------------------------------------------------------------------


def test_pages_need_the_token_and_the_token_link_lets_the_browser_in(
    browser: Browser, served: Served
) -> None:
    serveflows.failing.run(state_dir=served.state, run_id="for-token")
    context = browser.new_context()
    try:
        pg = context.new_page()
        for url in (f"{served.url}/", f"{served.url}/runs/failing/for-token"):
            r = pg.goto(url)
            assert r is not None and r.status == 401
            assert "Token required" in pg.inner_text("h1")
        r = pg.goto(f"{served.url}/?token=wrong")
        assert r is not None and r.status == 401
        r = pg.goto(f"{served.url}/?token={TOKEN}")
        assert r is not None and r.status == 200
        # from now on the cookie carries it: pages, scripts and the event stream
        pg.goto(f"{served.url}/runs/failing/for-token")
        ready(pg)
        assert pg.inner_text("#run-status") == "failed"
    finally:
        context.close()


# --- a large run --------------------------------------------------------------------------------


def test_a_10000_step_run_page_loads_in_a_few_seconds(
    page: Page, served: Served, tmp_path: Path
) -> None:
    flow = serveflows.wide(10_000)
    flow.run(state_dir=served.state)
    t = time.perf_counter()
    page.goto(f"{served.url}/runs/{flow.name}/{flow.name}")
    ready(page)
    took = time.perf_counter() - t
    print(f"10,000-step run page ready in {took:.2f}s")
    assert took < 8.0
    assert page.inner_text("#step-count") == "10000"
    assert page.locator("#step-table tbody tr").count() == 100  # one page of the table
    assert page.inner_text("#page") == "page 1 of 100"
    page.click("#next")
    assert page.locator("#step-table tbody tr").first.get_attribute("data-step") is not None
    assert page.inner_text("#page") == "page 2 of 100"
    page.fill("#filter", "s9999")
    page.wait_for_selector("#step-table tbody tr[data-step='s9999']")
    assert page.locator("#step-table tbody tr").count() == 1
    page.goto(f"{served.url}/")  # by now the folder holds runs of every kind
    ready(page)
    screenshot(page, "runs.png", tmp_path)
