"""Shell steps: run a command as a step, in a process group of its own.

``flow.shell("backup", "rsync -a out/ /mnt/backup/", depends_on=["report"], timeout=60)``

The command's output (stdout and stderr, interleaved) is the step's output and goes to the step's
log. Processes the command leaves running in the background keep the step open as long as they
hold its output; redirect their output (``cmd > file 2>&1 &``) to detach them. A non-zero exit
fails the step (and is retried per its policy). On timeout the command's whole process group
(the command and everything it started) gets SIGTERM, then SIGKILL after a grace period, and the
step ends ``timed_out``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from . import stopping, usage

__all__ = ["ShellCommand", "ShellCommandError", "ShellTimeoutError"]

GRACE_S = 2.0


class ShellCommandError(RuntimeError):
    """A shell step's command exited with a non-zero status.

    The message is one line; the command's output is in the step's log (``flowkit logs STEP``,
    and under the failure on the console), and its last lines in :attr:`tail`.
    """

    def __init__(self, command: str, code: int, tail: str = "", what: str = "command") -> None:
        self.command, self.code, self.tail, self.what = command, code, tail, what
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        super().__init__(f"{what} {command!r} {how}")

    @property
    def exit_code(self) -> int:
        """The command's exit status (negative: the signal that killed it)."""
        return self.code

    def __reduce__(self) -> tuple[Any, ...]:  # process and Dask workers send it back pickled
        return (type(self), (self.command, self.code, self.tail, self.what))


class ShellTimeoutError(TimeoutError):
    """A shell step's command ran past its timeout and was killed with its process group."""


class ShellCommand:
    """The callable behind a shell step (picklable, so process and Dask workers can run it).

    Run parameters named in ``params`` are passed to the command as environment variables
    ``FLOWKIT_PARAM_<NAME>``; upstream outputs are not passed (use files for data).
    """

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.command = command if isinstance(command, str) else list(command)
        self.cwd, self.env, self.timeout = cwd, dict(env or {}), timeout

    @property
    def text(self) -> str:
        """The command as one string (for messages and the cache key)."""
        c = self.command
        return c if isinstance(c, str) else " ".join(c)

    def __repr__(self) -> str:
        return f"ShellCommand({self.text!r})"

    def __call__(self, **params: Any) -> str:
        env = dict(os.environ)
        env.update(self.env)
        for key, value in params.items():
            env[f"FLOWKIT_PARAM_{key.upper()}"] = str(value)
        proc = subprocess.Popen(
            self.command,
            shell=isinstance(self.command, str),
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        token = stopping.register_group(proc.pid)  # a hard stop of flowkit kills it too
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            stopping.kill_group(proc.pid, signal.SIGTERM)
            killer = threading.Timer(GRACE_S, stopping.kill_group, (proc.pid, signal.SIGKILL))
            killer.daemon = True
            killer.start()

        timer = None
        if self.timeout is not None:
            timer = threading.Timer(self.timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            chunks = []
            for raw in iter(lambda: os.read(fd, 65536), b""):
                chunks.append(raw)
                sys.stdout.write(raw.decode(errors="replace"))
            # wait4 (not wait) to learn the command's CPU time and peak memory
            _, status, ru = os.wait4(proc.pid, 0)
            code = proc.returncode = os.waitstatus_to_exitcode(status)
            usage.record_child(ru)
            proc.stdout.close()
        except BaseException:
            stopping.kill_group(proc.pid, signal.SIGKILL)
            raise
        finally:
            stopping.forget(token)
            if timer is not None:
                timer.cancel()
        if code < 0:
            stopping.hold_if_stopping()  # killed because flowkit exits now: not a step failure
        output = b"".join(chunks).decode(errors="replace")
        if timed_out.is_set():
            raise ShellTimeoutError(
                f"command {self.text!r} timed out after {self.timeout:g}s; its process group "
                "was killed"
            )
        if code != 0:
            tail = "\n".join(output.rstrip().splitlines()[-10:])
            raise ShellCommandError(self.text, code, tail)
        return output
