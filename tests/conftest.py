"""Shared fixtures: every test gets its own state dir and working directory."""

from __future__ import annotations

import atexit
import json
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


#: Runs each command of the JSON list on stdin through ``flowkit.cli.main`` in this one process,
#: and prints ``[[exit code, stdout, stderr], ...]``.
_EACH = """\
import contextlib, io, json, os, sys
sys.path.insert(0, os.getcwd())  # as `python -m flowkit` has it
from flowkit.cli import main
done = []
for argv in json.load(sys.stdin):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # --help, --version
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    done.append([code, out.getvalue(), err.getvalue()])
sys.stdout.write(json.dumps(done))
"""


def run_flowkit_each(
    cwd: Path, *commands: list[str], **env: str
) -> list[subprocess.CompletedProcess[str]]:
    """Several ``flowkit`` commands that only read (``status``, ``report``, ``--help``...) run one
    after the other in one Python process: each gets its own exit code, stdout and stderr, as
    ``python -m flowkit`` would give them, without an interpreter start-up per command."""
    proc = subprocess.run(
        [PYTHON, "-c", _EACH],
        cwd=cwd,
        env=flowkit_env(**env),
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [
        subprocess.CompletedProcess([PYTHON, "-m", "flowkit", *argv], code, out, err)
        for argv, (code, out, err) in zip(commands, json.loads(proc.stdout), strict=True)
    ]


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
