"""The example workflows run end to end with real subprocesses; after a failure, running the same
command again re-runs only from the failed task."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, flowkit_env

EXAMPLES = ROOT / "examples"


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(EXAMPLES / name, target)
    return target


def _run(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowkit", "run", "workflow.yaml", "--plain", *args],
        cwd=folder,
        env=flowkit_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _states(stdout: str) -> dict[str, str]:
    """{step: SUCCEEDED | CACHED | FAILED | SKIPPED} from the plain console output."""
    return {m[1]: m[0] for m in re.findall(r"^\[(\w+)\]\s+([^\s:]+)", stdout, re.MULTILINE)}


def test_etl_example_fails_at_merge_reports_anyway_and_resumes_from_merge(
    tmp_path: Path,
) -> None:
    etl = _copy("etl", tmp_path)
    failed = _run(etl, ETL_BREAK_MERGE="1")
    assert failed.returncode == 1
    states = _states(failed.stdout)
    assert states["merge"] == "FAILED" and states["report"] == "SUCCEEDED"
    assert "script 'etl/merge.py' exited with status 1" in failed.stdout
    assert (etl / "out/report.txt").read_text() == "merge failed: 0 rows\n"
    resumed = _run(etl)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    states = _states(resumed.stdout)
    for source in ("extract_api", "extract_db", "transform_users", "transform_orders"):
        assert states[source] == "CACHED"
    assert states["merge"] == "SUCCEEDED" and states["report"] == "SUCCEEDED"
    merged = json.loads((etl / "out/merged.json").read_text())
    assert [r["total"] for r in merged["rows"]] == [20.0, 30.0, 4.25]
    assert (etl / "out/report.txt").read_text() == "merge succeeded: 3 rows\n"
    again = _run(etl)
    assert set(_states(again.stdout).values()) == {"CACHED"}


def test_batches_example_runs_16_instances_four_at_a_time_and_resumes_one_batch(
    tmp_path: Path,
) -> None:
    batches = _copy("batches", tmp_path)
    failed = _run(batches, FAIL_BATCH="9")
    assert failed.returncode == 1
    assert _states(failed.stdout)["process_batch[batch=9]"] == "FAILED"
    resumed = _run(batches)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    states = _states(resumed.stdout)
    ran = {k for k, v in states.items() if v == "SUCCEEDED"}
    assert ran == {"process_batch[batch=9]", "process_batch", "aggregate"}
    expected = sum(range(16 * 1000))
    assert (batches / "out/total.txt").read_text() == f"16 batches, total {expected}\n"


def test_deploy_example_rolls_back_when_smoke_tests_fail_and_always_notifies(
    tmp_path: Path,
) -> None:
    deploy = _copy("deploy", tmp_path)
    good = _run(deploy)
    assert good.returncode == 0, good.stdout + good.stderr
    assert _states(good.stdout)["rollback"] == "SKIPPED"
    log = (deploy / "out/deploy.log").read_text().splitlines()
    assert log == [
        "build 1.4.2",
        "test 1.4.2",
        "deploy 1.4.2",
        "smoke 1.4.2",
        "notify 1.4.2 smoke=succeeded",
    ]
    (deploy / "out/deploy.log").unlink()
    bad = _run(deploy, "--fresh", "--param", "release=1.4.3", SMOKE_FAIL="1")
    assert bad.returncode == 1
    states = _states(bad.stdout)
    assert states["smoke_tests"] == "FAILED" and states["rollback"] == "SUCCEEDED"
    log = (deploy / "out/deploy.log").read_text().splitlines()
    assert log[-2:] == ["rollback 1.4.3", "notify 1.4.3 smoke=failed"]
    assert log.count("smoke 1.4.3") == 2  # retried once
