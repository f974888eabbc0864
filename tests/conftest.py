"""Shared fixtures: every test gets its own state dir and working directory."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent


#: The user's config folder during tests (the key that signs pickled outputs lives there), so
#: tests never read or create the real one. Subprocesses inherit it through the environment.
CONFIG_HOME = Path(tempfile.mkdtemp(prefix="flowkit-test-config-"))
os.environ["XDG_CONFIG_HOME"] = str(CONFIG_HOME)
atexit.register(shutil.rmtree, CONFIG_HOME, True)
os.environ.pop("FLOWKIT_SECRET", None)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test in its own folder, with FLOWKIT_STATE_DIR unset and a private config dir."""
    monkeypatch.delenv("FLOWKIT_STATE_DIR", raising=False)
    monkeypatch.delenv("FLOWKIT_SECRET", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(CONFIG_HOME))
    monkeypatch.chdir(tmp_path)
    yield


def flowkit_env(**extra: str) -> dict[str, str]:
    """Environment for a `python -m flowkit` subprocess that can import flowkit and tests."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    env.pop("FLOWKIT_STATE_DIR", None)
    env.update(extra)
    return env


PYTHON = sys.executable


def run_flowkit(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m flowkit ARGS`` in ``cwd`` with the tests' environment (plus ``env``),
    output captured as text."""
    return subprocess.run(
        [PYTHON, "-m", "flowkit", *args],
        cwd=cwd,
        env=flowkit_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


#: The Chromium the browser tests drive (``FLOWKIT_CHROMIUM`` to use another binary).
CHROMIUM = os.environ.get("FLOWKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One headless Chromium per test process (Playwright driving the system's browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()
