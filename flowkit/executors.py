"""Execution backends. Every one is a ``concurrent.futures.Executor`` to the engine.

``inline`` runs each call at once in the calling thread (sequential, lowest overhead);
``thread`` and ``process`` are the stdlib pools; ``dask`` (extra ``flowkit[dask]``) wraps a
``distributed.Client``'s executor and closes the client on shutdown.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from . import capture, usage
from .errors import ExecutorUnavailableError, UsageError

__all__ = ["EXECUTORS", "InlineExecutor", "Invocation", "invoke", "make_executor"]

EXECUTORS = ("inline", "thread", "process", "dask")

#: (output, ctx writes, wall start, wall end, CPU seconds of the step's thread and of the
#: processes it waited for, worker id, peak resident bytes of those processes or None)
Invocation = tuple[Any, dict[str, Any] | None, float, float, float, str, int | None]


def invoke(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    ctx: Any,
    log_path: str | None = None,
    attempt: int | None = None,
) -> Invocation:
    """Call one step in a worker; ``async def`` steps run on an event loop of their own.

    ``log_path``: where the step's own output (prints, logging records) is captured, appended
    under a header line naming the attempt (``attempt``, else ``ctx.attempt`` when there is a
    ctx). The file is opened on the first write only; see :mod:`flowkit.capture`.
    """
    start, cpu = time.time(), time.thread_time()
    used, used_token = usage.begin()
    try:
        if log_path is None:
            out = fn(**kwargs)
            if inspect.isawaitable(out):
                out = asyncio.run(_await(out))
        else:
            if attempt is None and ctx is not None:
                attempt = getattr(ctx, "attempt", None)
            sink, token = capture.begin(log_path, attempt, start)
            try:
                out = fn(**kwargs)
                if inspect.isawaitable(out):
                    out = asyncio.run(_await(out))
            except BaseException as exc:
                capture.failed(sink, exc)
                raise
            finally:
                capture.end(sink, token)
    finally:
        usage.end(used_token)
    end = time.time()
    writes = ctx.writes if ctx is not None and ctx.writes else None
    return (
        out,
        writes,
        start,
        end,
        time.thread_time() - cpu + used.cpu,
        f"{os.getpid()}:{threading.current_thread().name}",
        used.peak_rss,
    )


async def _await(aw: Any) -> Any:
    return await aw


class InlineExecutor(Executor):
    """Runs each submitted call immediately in the caller's thread; returns a finished Future."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the step's failure is data for the engine
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            fut.set_exception(exc)
        return fut


class _DaskExecutor(Executor):
    def __init__(self, address: str | None, workers: int) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorUnavailableError(
                "executor 'dask' needs the dask extra: pip install 'flowkit[dask]'"
            ) from None
        if address:
            self.client = Client(address)
            self.cluster = None
        else:
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
                processes=True,
            )
            self.client = Client(self.cluster)
        self._inner = self.client.get_executor(pure=False)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._inner.submit(fn, *args, **kwargs)  # type: ignore[no-any-return]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind: str, workers: int, address: str | None = None) -> Executor:
    """The executor named ``kind`` with ``workers`` workers.

    Raises:
        UsageError: unknown kind or workers < 1.
        ExecutorUnavailableError: the backend's extra is not installed.
    """
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if kind == "inline":
        return InlineExecutor()
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowkit")
    if kind == "process":
        return ProcessPoolExecutor(max_workers=workers)
    if kind == "dask":
        return _DaskExecutor(address, workers)
    raise UsageError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
