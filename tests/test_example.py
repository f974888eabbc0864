"""The bundled example pipeline runs from the CLI, delivers its report, and resumes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, flowkit_env


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "pipeline:daily", *args],
        cwd=cwd,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_pipeline_delivers_the_report_and_then_runs_nothing(tmp_path: Path) -> None:
    work = tmp_path / "daily"
    shutil.copytree(
        ROOT / "examples" / "daily", work, ignore=shutil.ignore_patterns("out", ".flowkit")
    )
    first = _run(work, "--param", "date=2026-11-24")
    assert first.returncode == 0, first.stdout + first.stderr
    report = (work / "out" / "report-2026-11-24.txt").read_text()
    assert "north" in report and "226.50" in report.splitlines()[-1]
    assert (work / "out" / "backup" / "report-2026-11-24.txt").read_text() == report
    assert (work / "out" / "outbox" / "report-2026-11-24.txt").read_text() == report
    again = _run(work, "--param", "date=2026-11-24")
    assert again.returncode == 0
    assert again.stdout.count("[CACHED]") == 5 and "[SUCCEEDED]" not in again.stdout


def test_example_yaml_workflow_archives_the_days_extract(tmp_path: Path) -> None:
    work = tmp_path / "scripts"
    shutil.copytree(
        ROOT / "examples" / "scripts", work, ignore=shutil.ignore_patterns("out", ".flowkit")
    )
    run = subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "nightly.yaml", "--param", "day=2026-11-24"],
        cwd=work,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    archived = (work / "out" / "archive" / "2026-11-24.txt").read_text()
    assert archived.splitlines()[0] == "2026-11-24 row 0"
