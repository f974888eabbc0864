"""Shell steps: output, failures, parameters, and timeouts that kill the whole process group."""

from __future__ import annotations

import os
import time
from pathlib import Path

from flowkit import Flow, Status


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_shell_step_output_is_its_stdout_and_params_arrive_as_env(tmp_path: Path) -> None:
    flow = Flow("sh")
    flow.shell("hello", "echo hello $FLOWKIT_PARAM_WHO", params=["who"])

    @flow.step()
    def shout(hello: str) -> str:
        return hello.strip().upper()

    result = flow.run({"who": "world"}, state_dir=tmp_path)
    assert result["shout"].output == "HELLO WORLD"


def test_shell_step_nonzero_exit_fails_with_status_and_its_output_in_the_log(
    tmp_path: Path,
) -> None:
    flow = Flow("shfail")
    flow.shell("broken", ["sh", "-c", "echo about to fail; exit 3"])
    result = flow.run(state_dir=tmp_path)
    err = result["broken"].error
    assert result["broken"].status is Status.FAILED and err is not None
    assert err.message == "command 'sh -c echo about to fail; exit 3' exited with status 3"
    log = flow.store(state_dir=tmp_path).logs / "broken.log"
    assert "about to fail" in log.read_text()


def test_shell_timeout_kills_the_command_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    flow = Flow("shtimeout")
    # the command starts a grandchild that would outlive a plain kill of the shell
    flow.shell("spawner", f"sleep 60 & echo $! > {pid_file}; sleep 60", timeout=0.5)
    started = time.monotonic()
    result = flow.run(state_dir=tmp_path)
    assert time.monotonic() - started < 10
    assert result["spawner"].status is Status.TIMED_OUT
    assert result["spawner"].error is not None
    assert "process group was killed" in result["spawner"].error.message
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_shell_command_change_invalidates_the_cache(tmp_path: Path) -> None:
    marker = tmp_path / "count"

    def build(cmd: str) -> Flow:
        flow = Flow("shcache")
        flow.shell("write", cmd)
        return flow

    build(f"echo x >> {marker}").run(state_dir=tmp_path)
    build(f"echo x >> {marker}").run(state_dir=tmp_path)
    assert marker.read_text().count("x") == 1
    result = build(f"echo y >> {marker}").run(state_dir=tmp_path)
    assert result["write"].reason == "code changed"


def test_shell_step_retries_a_failing_command(tmp_path: Path) -> None:
    marker = tmp_path / "tries"
    flow = Flow("shretry")
    flow.shell(
        "flaky",
        f"echo t >> {marker}; test $(wc -l < {marker}) -ge 2",
        retries=2,
    )
    result = flow.run(state_dir=tmp_path)
    assert result["flaky"].status is Status.SUCCEEDED and result["flaky"].attempts == 2
    assert os.path.getsize(marker) > 0


def test_shell_step_records_cpu_and_peak_memory_of_the_command(tmp_path: Path) -> None:
    import sys

    flow = Flow("shusage")
    script = "b = bytearray(60_000_000); sum(range(3_000_000))"
    flow.shell("hungry", [sys.executable, "-c", script])
    assert flow.run(state_dir=tmp_path).ok
    rec = flow.load_state(state_dir=tmp_path).steps["hungry"]
    assert rec["peak_rss"] >= 60_000_000
    assert rec["cpu"] > 0.01


def test_isolated_step_records_its_peak_memory(tmp_path: Path) -> None:
    flow = Flow("isousage")

    @flow.step(isolate=True)
    def hungry() -> int:
        block = bytearray(80_000_000)
        return len(block)

    assert flow.run(state_dir=tmp_path).ok
    rec = flow.load_state(state_dir=tmp_path).steps["hungry"]
    assert rec["peak_rss"] >= 80_000_000
