"""Executors for attempts that may have to be stopped before they finish.

``IsolatedExecutor`` runs one call in a child process of its own, in its own process group, so
it can be killed; ``DaemonThreadExecutor`` runs one call per daemon thread, so an attempt that
has to be abandoned (threads cannot be killed) holds up neither the run nor the interpreter's exit.

Isolation is used for ``@step(isolate=True)`` and for steps with a timeout on the process
executor. A kill sends SIGTERM to the whole process group (the step and every process it
started), then SIGKILL after a grace period, so nothing the step spawned survives it.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from . import orphans, stopping, usage
from .remote import portable

__all__ = ["DaemonThreadExecutor", "IsolatedExecutor", "KillableFuture"]

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


def _context() -> Any:
    """The multiprocessing context of isolated attempts (imported when the first one starts)."""
    import multiprocessing

    return multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")


class KillableFuture(Future[Any]):
    """A Future whose work runs in a child process group that :meth:`kill` ends."""

    def __init__(self) -> None:
        super().__init__()
        self.pid: int | None = None

    def kill(self, grace: float = 2.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it after ``grace`` seconds."""
        pid = self.pid
        if pid is None:
            return
        stopping.kill_group(pid, signal.SIGTERM)
        timer = threading.Timer(grace, stopping.kill_group, (pid, signal.SIGKILL))
        timer.daemon = True
        timer.start()


def _child(
    conn: Connection,
    parent: int,
    state_dir: str | None,
    fn: Callable[..., Any],
    args: Any,
    kwargs: Any,
) -> None:
    os.setsid()  # a group of its own: a kill reaches everything the step starts
    # the parent's handlers (the run's clean stop) are not the step's: a SIGTERM from a kill
    # must end the child (and the shell commands it started, in sessions of their own), and
    # Ctrl-C mean what it means in any Python program
    stopping.die_with_children_on_sigterm()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    orphans.worker_init(parent, state_dir)  # and it dies with flowkit
    try:
        value = fn(*args, **kwargs)
        if isinstance(value, tuple) and len(value) == 7:  # an Invocation: add our peak memory
            peak = max(value[6] or 0, usage.self_peak_rss())
            value = (*value[:6], peak)
        result: tuple[bool, Any] = (True, value)
    except BaseException as exc:
        result = (False, portable(exc))
    try:
        conn.send_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:  # a result that does not pickle (exceptions were made portable)
        why = RuntimeError(f"the step's result is not picklable: {type(exc).__name__}: {exc}")
        conn.send_bytes(pickle.dumps((False, why)))
    finally:
        conn.close()


class IsolatedExecutor(Executor):
    """One child process per call; returns :class:`KillableFuture` objects.

    ``state_dir``: the children let go of the files they inherit from under it (see
    :func:`flowkit.orphans.worker_init`); they die with this process.
    """

    def __init__(self, state_dir: str | None = None) -> None:
        self.state_dir = state_dir

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> KillableFuture:
        fut = KillableFuture()
        fut.set_running_or_notify_cancel()
        ctx = _context()
        recv, send = ctx.Pipe(duplex=False)
        # fork copies the call into the child: local functions and lambdas work too
        proc = ctx.Process(
            target=_child,
            args=(send, os.getpid(), self.state_dir, fn, args, kwargs),
            daemon=True,
        )
        proc.start()
        send.close()
        fut.pid = proc.pid
        token = stopping.register_group(proc.pid)  # a hard stop of flowkit kills it too

        def wait_for_child() -> None:
            try:
                ok, value = pickle.loads(recv.recv_bytes())
            except (EOFError, OSError):
                proc.join()
                code = proc.exitcode
                how = (
                    f"killed by signal {-code}"
                    if code is not None and code < 0
                    else (f"exited with code {code}")
                )
                ok, value = False, ChildProcessError(f"the step's process {how}")
            finally:
                recv.close()
            proc.join()
            stopping.forget(token)
            if not ok:
                stopping.hold_if_stopping()  # killed because flowkit exits now: not a failure
            if fut.done():
                return
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

        threading.Thread(target=wait_for_child, name="flowkit-isolated", daemon=True).start()
        return fut


class DaemonThreadExecutor(Executor):
    """One daemon thread per call: for steps with a timeout, so an abandoned attempt never
    blocks the next step or the interpreter's exit."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)  # each thread is named, so a report can draw its lane

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()

        def target() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                fut.set_exception(exc)

        name = f"flowkit-timed-{next(self._ids)}"
        fut.flowkit_worker = f"{os.getpid()}:{name}"  # type: ignore[attr-defined]
        threading.Thread(target=target, name=name, daemon=True).start()
        return fut
