"""Pipeline sources and helpers for the CLI tests.

The pipelines are kept as source text so a test can write them into its own folder and edit them
between runs (code-change detection works on the file's source). Every step appends its name to
``ran.log`` in the working directory, so a test can see exactly which steps executed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import flowkit_env

# fetch -> transform -> report (data), archive depends_on report (order only).
# `normalise` is a same-file helper called by transform.
PIPELINE = '''\
from __future__ import annotations

from pathlib import Path

from flowkit import Flow

daily = Flow("daily")


def ran(name: str) -> None:
    with open("ran.log", "a") as f:
        f.write(name + "\\n")


def normalise(text: str) -> str:
    return text.strip().lower()


@daily.step()
def fetch(date: str = "2026-11-25") -> str:
    """Fetch the day's sales."""
    ran("fetch")
    return f"  Sales for {date}  "  # FETCH-BODY


@daily.step()
def transform(fetch: str) -> str:
    ran("transform")
    return normalise(fetch)


@daily.step()
def report(transform: str, date: str = "2026-11-25") -> str:
    ran("report")
    Path(f"report-{date}.txt").write_text(transform)
    return transform.upper()


@daily.step(depends_on=["report"])
def archive() -> str:
    ran("archive")
    return "archived"
'''

# A project folder: proj/pipeline.py imports its sibling proj/shop_helpers.py in two styles.
PROJ_PIPELINE = """\
from __future__ import annotations

import shop_helpers
from shop_helpers import clean

from flowkit import Flow

shop = Flow("shop")


def ran(name: str) -> None:
    with open("ran.log", "a") as f:
        f.write(name + "\\n")


@shop.step()
def load() -> str:
    ran("load")
    return clean("  Widgets ")


@shop.step()
def price(load: str) -> int:
    ran("price")
    return shop_helpers.scale(len(load))


@shop.step()
def publish(load: str, price: int) -> str:
    ran("publish")
    with open("published.txt", "w") as f:
        f.write(f"{load}={price}")
    return f"{load}={price}"
"""

# proj/shop_helpers.py
PROJ_HELPERS = """\
def clean(text):
    return text.strip().lower()


def scale(n):
    return n * 10
"""

# Two independent branches; `broken` fails (it sorts before `good`, so with one worker it runs
# first). `after_broken` depends on it; `good` -> `good_report` do not.
BRANCHES = """\
from __future__ import annotations

from flowkit import Flow

branches = Flow("branches")


def ran(name: str) -> None:
    with open("ran.log", "a") as f:
        f.write(name + "\\n")


@branches.step()
def broken() -> int:
    ran("broken")
    raise ValueError("disk on fire")


@branches.step()
def after_broken(broken: int) -> int:
    ran("after_broken")
    return broken + 1


@branches.step()
def good() -> int:
    ran("good")
    return 1


@branches.step()
def good_report(good: int) -> int:
    ran("good_report")
    return good * 2
"""

# `flaky` fails on its first attempt and succeeds on its retry (a counter file in cwd).
FLAKY = """\
from __future__ import annotations

from pathlib import Path

from flowkit import Flow

retrying = Flow("retrying")


@retrying.step(retries=2, backoff=0)
def flaky() -> str:
    counter = Path("attempts.txt")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n < 2:
        raise ConnectionError("try again")
    return "ok"


@retrying.step()
def after(flaky: str) -> str:
    return flaky + "!"
"""

# `n: int` is converted from the command line's string; the step records what it received.
TYPED = """\
from __future__ import annotations

from flowkit import Flow

typed = Flow("typed")


@typed.step()
def double(n: int) -> int:
    with open("received.txt", "w") as f:
        f.write(f"{type(n).__name__}:{n!r}")
    return n * 2
"""

TWO_FLOWS = """\
from flowkit import Flow

daily = Flow("daily")
weekly = Flow("weekly")


@daily.step()
def a() -> int:
    return 1


@weekly.step()
def b() -> int:
    return 2
"""


def write(folder: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``folder/name`` (creating folders); return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def edit(path: Path, old: str, new: str) -> None:
    """Replace exactly one occurrence of ``old`` in the file (fails loudly otherwise)."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def ran(folder: Path) -> list[str]:
    """The steps that executed since the last call (reads and clears ``ran.log``)."""
    log = folder / "ran.log"
    if not log.exists():
        return []
    names = log.read_text().split()
    log.unlink()
    return names


def flowkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m flowkit ARGS`` in ``cwd``; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        cwd=cwd,
        # no .pyc files: an edit that keeps a file's size within the same second would otherwise
        # let Python import stale bytecode
        env=flowkit_env(PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
