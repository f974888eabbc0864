"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` as separate processes.

Everything binds 127.0.0.1 on free ports; the processes run in a folder of their own with no
``PYTHONPATH``, so nothing of the tests' projects is importable there unless flowkit ships it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A process in a session of its own (its children die with it), output kept in a file."""

    def __init__(
        self, args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env={**clean_env(), **(env or {})},
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._out.close()


class Cluster:
    """One scheduler and some workers; :meth:`stop` always ends all of them.

    ``copies``: the workers use their own copies of what flowkit ships even though they share
    this machine's files (as workers on other machines must).
    """

    def __init__(self, home: Path, port: int | None = None, copies: bool = True) -> None:
        self.home = home
        self.copies = copies
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: Proc | None = None
        self.workers: list[Proc] = []
        home.mkdir(parents=True, exist_ok=True)

    def start_scheduler(self) -> None:
        self.scheduler = Proc(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dashboard-address",
                f"127.0.0.1:{free_port()}",
            ],
            self.home,
            self.home / "scheduler.log",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"the scheduler did not start: {self.scheduler.log.read_text()}")

    def start_worker(self, name: str) -> None:
        local = self.home / f"worker-{name}"
        local.mkdir(exist_ok=True)
        self.workers.append(
            Proc(
                [
                    DASK,
                    "worker",
                    self.address,
                    "--name",
                    name,
                    "--nthreads",
                    "2",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(local),
                ],
                local,
                self.home / f"worker-{name}.log",
                {"FLOWKIT_SHIP_COPY": "1"} if self.copies else None,
            )
        )

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(n, timeout=60)

    def kill_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.kill()
            self.scheduler = None

    def kill_workers(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers = []

    def stop(self) -> None:
        self.kill_workers()
        self.kill_scheduler()
