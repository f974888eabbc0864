"""Faults of the machine: a full disk, a read-only state folder, a file where a folder should be,
names too long for a file system, names with control characters, YAML nested without end.

A full disk is injected two ways: an ``OSError(ENOSPC)`` from ``os.write`` for the files under
test (in-process), and a real kernel limit on file size (``RLIMIT_FSIZE``) for a CLI run. A
read-only state folder is a read-only bind mount in a private mount namespace when the tests run
as root (root ignores permission bits), and ``chmod a-w`` otherwise.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, flowkit_env, run_flowkit_each

from flowkit import Flow, StateWriteError
from flowkit.codec import write_atomic
from flowkit.keys import safe_name
from flowkit.records import parse_line

PIPELINE = """\
from __future__ import annotations

import os

from flowkit import Flow

disk = Flow("disk")


def ran(name: str) -> None:
    with open("ran.txt", "a") as f:
        f.write(name + "\\n")


@disk.step()
def small() -> int:
    ran("small")
    print("small says hello")
    return 1


@disk.step()
def big(small: int) -> bytes:
    ran("big")
    return b"x" * int(os.environ.get("BIG_BYTES", "300000"))


@disk.step()
def last(big: bytes) -> int:
    ran("last")
    return len(big)
"""


def _write_pipeline(folder: Path) -> None:
    (folder / "pipe.py").write_text(PIPELINE)


def _flowkit(
    folder: Path, *args: str, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "flowkit", *args],
        cwd=folder,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=preexec,
    )


def _ran(folder: Path) -> list[str]:
    path = folder / "ran.txt"
    return path.read_text().split() if path.exists() else []


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable[[str], bool]], None]]:
    """``full_disk(matches)``: from now on ``os.write`` to a file whose path ``matches`` fails
    with ENOSPC, after writing half of its first such call (a partial write, as disks do)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell which file a descriptor writes")
    real = os.write
    partial_done: list[bool] = []

    def arm(matches: Callable[[str], bool]) -> None:
        def write(fd: int, data: bytes | memoryview) -> int:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if matches(target):
                if not partial_done and len(data) > 1:
                    partial_done.append(True)
                    return real(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd, data)

        monkeypatch.setattr(os, "write", write)

    yield arm
    monkeypatch.setattr(os, "write", real)


def _disk_flow(calls: list[str]) -> Flow:
    flow = Flow("disk")

    @flow.step()
    def small() -> int:
        calls.append("small")
        return 1

    @flow.step()
    def big(small: int) -> bytes:
        calls.append("big")
        return b"x" * 1000

    @flow.step()
    def last(big: bytes) -> int:
        calls.append("last")
        return len(big)

    return flow


def test_full_disk_while_writing_an_output_is_a_state_error_and_leaves_no_temp_file(
    tmp_path: Path, full_disk: Callable[[Callable[[str], bool]], None]
) -> None:
    calls: list[str] = []
    flow = _disk_flow(calls)
    full_disk(lambda target: "/objects/" in target)

    with pytest.raises(StateWriteError) as caught:
        flow.run(state_dir=tmp_path)

    message = str(caught.value)
    assert "/objects/" in message and ".pkl" in message, message
    assert "No space left on device" in message, message
    assert "Free some space" in message and "picklable" not in message
    assert _temp_files(tmp_path) == []
    assert caught.value.exit_code == 2
    journal = tmp_path / "disk" / "disk" / "journal.jsonl"
    for line in journal.read_bytes().splitlines():
        parse_line(line, sealed=True)

    os_write_restored = _disk_flow(calls)  # the disk has space again: resume
    full_disk(lambda target: False)
    result = os_write_restored.run(state_dir=tmp_path)
    assert result.ok and result["last"].output == 1000
    assert calls == ["small", "big", "big", "last"]  # `small` was journaled: not run again


def test_full_disk_while_appending_to_the_journal_keeps_it_whole_and_resumable(
    tmp_path: Path, full_disk: Callable[[Callable[[str], bool]], None]
) -> None:
    calls: list[str] = []
    flow = _disk_flow(calls)
    flow.run(state_dir=tmp_path)
    journal = tmp_path / "disk" / "disk" / "journal.jsonl"
    before = journal.read_bytes()
    full_disk(lambda target: target.endswith("journal.jsonl"))

    with pytest.raises(StateWriteError) as caught:
        flow.run(state_dir=tmp_path, rerun=["small"])

    assert "journal.jsonl" in str(caught.value) and "No space left" in str(caught.value)
    after = journal.read_bytes()
    assert after == before, "the half-written record is cut off again"
    assert _temp_files(tmp_path) == []

    full_disk(lambda target: False)
    result = flow.run(state_dir=tmp_path, rerun=["small"])
    assert result.ok
    for line in journal.read_bytes().splitlines():
        parse_line(line, sealed=True)


def test_full_disk_mid_run_from_the_cli_exits_2_naming_the_file_with_no_traceback(
    tmp_path: Path,
) -> None:
    _write_pipeline(tmp_path)

    def small_disk() -> None:  # a real kernel limit: writes past 100 kB fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    result = _flowkit(tmp_path, "run", "pipe.py:disk", preexec=small_disk)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "/objects/" in result.stderr and "File too large" in result.stderr, result.stderr
    assert "picklable" not in result.stderr
    assert _temp_files(tmp_path / ".flowkit") == []
    again = _flowkit(tmp_path, "run", "pipe.py:disk")
    assert again.returncode == 0, again.stderr
    assert _ran(tmp_path) == ["small", "big", "big", "last"]


def test_a_step_log_that_cannot_be_written_drops_the_output_but_not_the_step(
    tmp_path: Path,
) -> None:
    _write_pipeline(tmp_path)
    assert _flowkit(tmp_path, "run", "pipe.py:disk").returncode == 0
    logs = tmp_path / ".flowkit" / "disk" / "disk" / "logs"
    shutil.rmtree(logs)
    logs.write_text("in the way")  # opening logs/small.log fails, as on a full disk

    result = _flowkit(tmp_path, "run", "pipe.py:disk", "--rerun", "small")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "cannot write the step log" in result.stderr and "small.log" in result.stderr
    assert "Traceback" not in result.stderr
    assert _ran(tmp_path) == ["small", "big", "last"] * 2


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_removes_the_temp_file(
    tmp_path: Path, full_disk: Callable[[Callable[[str], bool]], None]
) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"old")
    full_disk(lambda path: path.startswith(str(tmp_path)))
    with pytest.raises(StateWriteError, match=r"report\.json"):
        write_atomic(target, b"new" * 100)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


# --- a read-only state folder ---------------------------------------------------------------------


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


def _read_only(folder: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m flowkit ARGS`` in ``folder``, with ``state`` read-only for it."""
    command = [PYTHON, "-m", "flowkit", *args]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [state, *state.rglob("*")]}
        for p, mode in modes.items():
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            return subprocess.run(
                command, cwd=folder, env=flowkit_env(), capture_output=True, text=True, timeout=120
            )
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    if not _can_unshare():
        pytest.skip("root without a private mount namespace: cannot make a folder read-only")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(state), *command],
        cwd=folder,
        env=flowkit_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_read_only_commands_work_on_a_read_only_state_folder_and_run_exits_2(
    tmp_path: Path,
) -> None:
    _write_pipeline(tmp_path)
    assert _flowkit(tmp_path, "run", "pipe.py:disk").returncode == 0
    state = tmp_path / ".flowkit"
    run_dir = state / "disk" / "disk"
    (run_dir / "run.lock").unlink()  # so we see that no command creates it
    tree = sorted(p.relative_to(state) for p in state.rglob("*"))

    for args in (
        ["status", "pipe.py:disk"],
        ["report", "pipe.py:disk"],
        ["runs", "pipe.py:disk"],
        ["logs", "pipe.py:disk", "small"],
        ["explain", "pipe.py:disk", "last"],
        ["graph", "pipe.py:disk", "--run-id", "disk"],
        ["run", "pipe.py:disk", "--dry-run"],
    ):
        result = _read_only(tmp_path, state, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, args
    assert "small says hello" in _read_only(tmp_path, state, "logs", "pipe.py:disk", "small").stdout
    assert sorted(p.relative_to(state) for p in state.rglob("*")) == tree, "nothing created"

    result = _read_only(tmp_path, state, "run", "pipe.py:disk", "--rerun", "last")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert str(Path(".flowkit/disk/disk")) in result.stderr, result.stderr
    assert "read-only" in result.stderr.lower() or "permission denied" in result.stderr.lower()
    cleaned = _read_only(tmp_path, state, "clean", "pipe.py:disk")
    assert cleaned.returncode == 2 and "Traceback" not in cleaned.stderr, cleaned.stderr
    assert "writable" in cleaned.stderr


def test_status_does_not_create_a_lock_file(tmp_path: Path) -> None:
    _write_pipeline(tmp_path)
    _flowkit(tmp_path, "run", "pipe.py:disk")
    lock = tmp_path / ".flowkit" / "disk" / "disk" / "run.lock"
    lock.unlink()
    commands = (["status", "pipe.py:disk"], ["report", "pipe.py:disk"], ["runs", "pipe.py:disk"])
    readers = run_flowkit_each(tmp_path, *commands)
    for r in readers:
        assert r.returncode == 0, r.args
    assert not lock.exists()


# --- a file where the state folder should be ------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "status", "report", "runs", "explain"])
def test_state_dir_that_is_a_file_is_a_clear_error_exit_2(tmp_path: Path, command: str) -> None:
    _write_pipeline(tmp_path)
    (tmp_path / "state").write_text("not a folder")
    args = [command, "pipe.py:disk", "--state-dir", "state"] + (
        ["last"] if command == "explain" else []
    )
    result = _flowkit(tmp_path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "state: it is a file, not a folder" in result.stderr, result.stderr
    assert (tmp_path / "state").read_text() == "not a folder"


def test_state_dir_that_is_a_file_is_a_state_error_from_the_api(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(StateWriteError, match="it is a file, not a folder"):
        _disk_flow([]).run(state_dir=tmp_path / "state")


# --- names ----------------------------------------------------------------------------------------


def test_a_5000_character_run_id_is_shortened_with_a_hash_on_disk(tmp_path: Path) -> None:
    _write_pipeline(tmp_path)
    rid = "r" * 5000
    result = _flowkit(tmp_path, "run", "pipe.py:disk", "--run-id", rid)
    assert result.returncode == 0, result.stderr
    (folder,) = [p for p in (tmp_path / ".flowkit" / "disk").iterdir() if p.name != "objects"]
    assert len(folder.name) < 100 and folder.name.startswith("r" * 80 + "-")
    status = _flowkit(tmp_path, "status", "pipe.py:disk", "--run-id", rid)
    assert status.returncode == 0 and "succeeded" in status.stdout, status.stderr
    assert _flowkit(tmp_path, "run", "pipe.py:disk", "--run-id", rid).returncode == 0
    assert _ran(tmp_path) == ["small", "big", "last"], "the same run resumed"


def test_safe_name_keeps_reasonable_names_and_shortens_long_ones() -> None:
    assert safe_name("load") == "load" and safe_name("x" * 200) == "x" * 200
    assert len(safe_name("x" * 201)) == 89 and safe_name("x" * 201) != safe_name("x" * 202)


def test_control_characters_in_names_are_escaped_on_the_console(tmp_path: Path) -> None:
    (tmp_path / "nl.py").write_text(
        "from flowkit import Flow\n"
        'f = Flow("nl\\nflow")\n'
        '@f.step(name="bad\\nstep\\x1b[31m")\n'
        "def a() -> int:\n"
        '    raise ValueError("boom")\n'
        '@f.step(matrix={"w": ["x\\ny"]})\n'
        "def b(w: str) -> str:\n"
        "    return w\n"
    )
    run = _flowkit(tmp_path, "run", "nl.py:f", "--continue-on-error", "--plain")
    assert run.returncode == 1, run.stderr
    readers = run_flowkit_each(
        tmp_path,
        ["status", "nl.py:f"],
        ["report", "nl.py:f"],
        ["run", "nl.py:f", "--dry-run"],
        ["graph", "nl.py:f"],
    )
    for output in (run.stdout, *(r.stdout for r in readers)):
        assert "\x1b" not in output
        assert "bad\\nstep\\x1b[31m" in output, output
        assert not any(line.startswith(("step", "flow", "y]")) for line in output.splitlines())


# --- YAML nested without end ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        "steps:\n  a: " + "[" * 5000 + "]" * 5000 + "\n",
        "steps:\n  a:\n" + "".join("  " * (i + 2) + "k:\n" for i in range(3000)),
    ],
    ids=["flow-style", "block-style"],
)
def test_deeply_nested_yaml_is_refused_with_exit_2_and_no_traceback(
    tmp_path: Path, document: str
) -> None:
    (tmp_path / "deep.yaml").write_text(document)
    result = _flowkit(tmp_path, "run", "deep.yaml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert "deep.yaml:" in result.stderr
    assert "nested more than 64 levels" in result.stderr or "nesting depth" in result.stderr
