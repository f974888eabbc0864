"""The bundled example pipeline runs from the CLI, delivers its report, and resumes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
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


SELECT = [sys.executable, "-m", "flowkit", "run", "pipeline:select_model", "--run-id", "wine"]


def _select(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SELECT, "--executor", "process", "--workers", "2", "--plain", *args],
        cwd=cwd,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_model_selection_example_picks_a_model_and_fits_only_a_new_candidate(
    tmp_path: Path,
) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("pyarrow")
    work = tmp_path / "model_selection"
    shutil.copytree(
        ROOT / "examples" / "model_selection",
        work,
        ignore=shutil.ignore_patterns("out", ".flowkit"),
    )
    first = _select(work)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("[SUCCEEDED] fit[") == 7
    report = (work / "out" / "model_selection.txt").read_text().splitlines()
    assert len(report) == 1 + 7 + 1 and "<- best" in report[1]
    best = report[1].split()[0]
    assert report[-1].startswith(f"test accuracy of {best}: ")
    assert float(report[-1].rsplit(" ", 1)[1]) >= 0.85  # wine is an easy dataset
    (frame,) = work.glob(".flowkit/select_model/objects/*/*.parquet")  # the dataset
    assert frame.stat().st_size > 0
    grid = "svc:1," + "logreg:0.1,logreg:1,logreg:10,tree:3,tree:6,forest:50,forest:200"
    second = _select(work, "--param", f"grid={grid}")
    assert second.returncode == 0, second.stdout + second.stderr
    fitted = [x for x in second.stdout.splitlines() if x.startswith("[SUCCEEDED] fit[")]
    assert fitted == [x for x in fitted if x.startswith("[SUCCEEDED] fit[svc:1]")]
    assert len(fitted) == 1 and "new instance" in fitted[0]
    assert second.stdout.count("[CACHED]    fit[") == 7
    assert len((work / "out" / "model_selection.txt").read_text().splitlines()) == 1 + 8 + 1
