"""``flowkit report --html`` in a real headless Chromium (Playwright driving the system's
browser): a 250-step run with a failure, retries, a timed-out thread step and a fan-out.

The failed step is on screen without scrolling, each attempt is a bar, the collapsed log opens
on a click, and the tables wrap at 1024 px instead of scrolling sideways.
``FLOWKIT_SCREENSHOTS=docs/img`` saves the guide's screenshot there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CHROMIUM, ROOT, run_flowkit

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)

if Path(CHROMIUM).exists():
    from playwright.sync_api import Browser, Page

CHAINS, DEPTH = 25, 10  # 250 steps in 25 chains of 10
LONG_NAME = "normalise_" + "x" * 90  # a step name with nowhere to break

PIPELINE = f"""\
import pathlib, time
from flowkit import Flow

flow = Flow("wide")


@flow.step(retries=2, backoff=0.05)
def flaky() -> int:
    calls = pathlib.Path(__file__).with_name("calls")
    n = len(calls.read_text()) if calls.exists() else 0
    calls.write_text("x" * (n + 1))
    if n < 2:
        raise ConnectionError(f"refused #{{n + 1}}")
    return 1


@flow.step(matrix={{"region": ["north", "south", "east", "west", "up", "down", "in", "out"]}})
def fetch(region: str) -> str:
    return region


@flow.step(timeout=0.3)
def stuck() -> None:
    time.sleep(1.5)


@flow.step(name={LONG_NAME!r})
def long_one() -> None:
    raise ValueError("no separator in this value: " + "y" * 300)


def make(chain: int, k: int):
    def run() -> int:
        if (chain, k) == (17, 6):
            print("reading batch 17/6")
            print("bad row at offset 4096")
            raise KeyError("column 'amount' is missing")
        return k
    run.__name__ = f"c{{chain}}_{{k}}"
    return run


for chain in range({CHAINS}):
    for k in range({DEPTH}):
        deps = [f"c{{chain}}_{{k - 1}}"] if k else []
        if (chain, k) == (0, 3):
            deps += ["flaky", "fetch"]
        flow.step(name=f"c{{chain}}_{{k}}", depends_on=deps)(make(chain, k))
"""


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wide")
    (folder / "p.py").write_text(PIPELINE)
    ran = run_flowkit(
        folder, "run", "p.py:flow", "--executor", "thread", "--workers", "4", "--continue-on-error"
    )
    assert ran.returncode == 1, ran.stderr
    page = folder / "report.html"
    made = run_flowkit(folder, "report", "p.py:flow", "--html", str(page))
    assert made.returncode == 0, made.stderr
    return page


@pytest.fixture
def page(browser: Browser, report_page: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(report_page.as_uri())
    pg.wait_for_selector("body[data-ready='1']", timeout=15_000)
    yield pg
    context.close()
    assert errors == []


def test_the_failed_step_is_on_screen_without_scrolling(page: Page) -> None:
    assert page.evaluate("window.scrollY") == 0
    node = page.locator('#dag-focus g.node[data-step="c17_6"]')
    assert node.get_attribute("data-status") == "failed"
    box = node.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1024, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= 768, box
    # the focus holds the failures and the steps just upstream of them, not the 250 steps
    focus = page.locator("#dag-focus g.node")
    names = {focus.nth(i).get_attribute("data-step") for i in range(focus.count())}
    assert names == {"c17_6", "c17_5", "c17_4", "c17_3", "stuck", LONG_NAME}
    assert "3 of 6" in page.locator("#focus-hint").inner_text()
    assert page.locator("#graph-full").get_attribute("open") is None
    assert page.locator("#dag g.node").count() == 2 + 1 + 1 + CHAINS * DEPTH
    # the fan-out is one node with its instances counted
    fetch = page.locator('#dag g.node[data-step="fetch"]')
    assert "8✓" in (fetch.text_content() or "")
    screenshot(page, "report.png")


def test_each_attempt_is_a_bar_and_waits_are_shown(page: Page) -> None:
    assert page.locator('#gantt rect.bar[data-step="flaky"]').count() == 3
    assert page.locator('#gantt rect.wait[data-step="flaky"]').count() == 2
    failed = page.locator('#gantt rect.bar[data-step="flaky"].st-failed')
    assert failed.count() == 2
    # the timed-out thread step is drawn on the thread it ran on, though it was abandoned
    lane = page.locator('#gantt g.lane:has(rect.bar[data-step="stuck"])')
    assert "flowkit-timed" in (lane.get_attribute("data-worker") or "")


def test_the_collapsed_log_opens_on_click(page: Page) -> None:
    row = page.locator('tr[data-step="c17_6"] + tr.more')  # the row under the step's
    log = row.locator("details.log")
    pre = log.locator("pre")
    assert not pre.is_visible()
    log.locator("summary").click()
    assert pre.is_visible()
    assert "bad row at offset 4096" in pre.inner_text()
    tb = row.locator("details.traceback pre")
    assert "KeyError" in (tb.text_content() or "")
    assert "flowkit/" not in (tb.text_content() or "")  # the user's frames only


def test_tables_wrap_instead_of_scrolling_sideways(page: Page) -> None:
    page.locator(f'tr[data-step="{LONG_NAME}"] + tr.more details.traceback summary').click()
    page.locator('tr[data-step="c17_6"] + tr.more details.log summary').click()
    widths = page.evaluate(
        """() => {
          const t = document.getElementById('step-table');
          const d = document.documentElement;
          return [t.scrollWidth, t.clientWidth, d.scrollWidth, d.clientWidth];
        }"""
    )
    table_scroll, table_client, page_scroll, page_client = widths
    assert table_scroll <= table_client + 1, widths
    assert page_scroll <= page_client, widths
    row = page.locator(f'tr[data-step="{LONG_NAME}"]')
    assert row.locator("td.name").bounding_box()["height"] > 30  # type: ignore[index]


def screenshot(pg: Page, name: str) -> None:
    target = os.environ.get("FLOWKIT_SCREENSHOTS")
    if target:  # relative to the repository (tests run in their own working directory)
        pg.screenshot(path=str(ROOT / target / name), full_page=False)
