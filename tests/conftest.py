"""Shared fixtures: every test gets its own state dir and working directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test in its own folder, with FLOWKIT_STATE_DIR unset."""
    monkeypatch.delenv("FLOWKIT_STATE_DIR", raising=False)
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
