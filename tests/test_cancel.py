"""``flowkit cancel`` stops a real running run gracefully; status says cancelled; run resumes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import flowkit_env, run_flowkit

_flowkit = run_flowkit


def test_cancel_stops_a_running_run_which_the_same_command_resumes(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "tasks:\n"
        "  first: echo first >> log.txt\n"
        "  slow: {command: 'test -f go || sleep 30; echo slow >> log.txt', depends_on: [first]}\n"
        "  last: {command: echo last >> log.txt, depends_on: [slow]}\n"
    )
    not_running = _flowkit(tmp_path, "cancel", "wf.yaml")
    assert not_running.returncode == 2 and "is not running" in not_running.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowkit", "run", "wf.yaml", "--plain", "--grace", "0.2"],
        cwd=tmp_path,
        env=flowkit_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "running" not in _flowkit(tmp_path, "status", "wf.yaml").stdout.split("\n")[0]:
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        cancel = _flowkit(tmp_path, "cancel", "wf.yaml")
        assert cancel.returncode == 0, cancel.stderr
        assert "asked run wf of flow wf" in cancel.stdout
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "SIGTERM received" in err
    status = _flowkit(tmp_path, "status", "wf.yaml")
    assert "Flow wf, run wf: cancelled" in status.stdout
    assert "last" in status.stdout and "pending" in status.stdout
    (tmp_path / "go").touch()
    resumed = _flowkit(tmp_path, "run", "wf.yaml", "--plain")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "[CACHED]    first" in resumed.stdout and "[SUCCEEDED] last" in resumed.stdout
    assert (tmp_path / "log.txt").read_text().splitlines()[0] == "first"
    assert "succeeded" in _flowkit(tmp_path, "status", "wf.yaml").stdout.split("\n")[0]
