"""Execution backends. Every one is a ``concurrent.futures.Executor`` to the engine.

``inline`` runs each call at once in the calling thread (sequential, lowest overhead);
``thread`` and ``process`` are the stdlib pools (the process pool, which sends calls with
cloudpickle, is in :mod:`flowkit.procpool`); ``dask`` (extra ``flowkit[dask]``) is in
:mod:`flowkit.dask_executor`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from . import capture, stopping, usage
from .errors import ExecutorUnavailableError, UsageError
from .procpool import check_picklable, process_pool
from .result import user_traceback

__all__ = [
    "EXECUTORS",
    "AsyncLoopExecutor",
    "InlineExecutor",
    "Invocation",
    "ainvoke",
    "check_picklable",
    "invoke",
    "invoke_here",
    "make_executor",
]

EXECUTORS = ("inline", "thread", "process", "dask")

#: (output, ctx writes, wall start, wall end, CPU seconds of the step's thread and of the
#: processes it waited for, worker id, peak resident bytes of those processes or None)
Invocation = tuple[Any, dict[str, Any] | None, float, float, float, str, int | None]


class _Attempt:
    """Timing, output capture, resource figures and trace context around one attempt (sync or
    async)."""

    __slots__ = (
        "attempt",
        "cpu",
        "ctx",
        "log_path",
        "out",
        "sink",
        "start",
        "tokens",
        "trace",
        "traced",
        "used",
    )

    def __init__(
        self, ctx: Any, log_path: str | None, attempt: int | None, trace: dict[str, str] | None
    ) -> None:
        self.ctx, self.log_path, self.trace = ctx, log_path, trace
        self.traced: Any = None
        if attempt is None and ctx is not None:
            attempt = getattr(ctx, "attempt", None)
        self.attempt = attempt
        self.out: Any = None

    def __enter__(self) -> _Attempt:
        self.start, self.cpu = time.time(), time.thread_time()
        self.used, used_token = usage.begin()
        self.sink = None
        if self.log_path is not None:
            self.sink, token = capture.begin(self.log_path, self.attempt, self.start)
            self.tokens: tuple[Any, ...] = (used_token, token)
        else:
            self.tokens = (used_token,)
        if self.trace:
            self.traced = _attach_trace(self.trace)
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        text = ""
        if exc is not None:
            # where the failed attempt ran, and the step's frames, travel with the exception
            # (pickled with it too: a process or Dask worker's traceback is not)
            text = user_traceback(exc)
            with contextlib.suppress(Exception):
                exc.flowkit_worker = _worker_id()  # type: ignore[attr-defined]
                exc.flowkit_traceback = text  # type: ignore[attr-defined]
        if self.sink is not None:
            if exc is not None:
                capture.failed(self.sink, exc, text)
            capture.end(self.sink, self.tokens[1])
        usage.end(self.tokens[0])
        if self.traced is not None:
            from opentelemetry import context

            context.detach(self.traced)

    def result(self, thread_cpu: bool = True) -> Invocation:
        ctx = self.ctx
        writes = ctx.writes if ctx is not None and ctx.writes else None
        cpu = (time.thread_time() - self.cpu if thread_cpu else 0.0) + self.used.cpu
        worker = _worker_id()
        return (self.out, writes, self.start, time.time(), cpu, worker, self.used.peak_rss)


def _attach_trace(carrier: dict[str, str]) -> Any:
    """Make the step span sent with the attempt the current OpenTelemetry context (None when
    the OpenTelemetry API is not installed here: nothing inside the step can trace then)."""
    try:
        from opentelemetry import context, propagate
    except ImportError:
        return None
    return context.attach(propagate.extract(carrier))


#: Types of the values steps usually return, which cannot be awaitable (isawaitable is an ABC
#: check: slow, once per attempt).
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, list, dict, tuple, set})

_local = threading.local()


def _worker_id() -> str:
    """``pid:thread-name`` of the calling thread (cached per thread; fork-safe via the pid)."""
    pid = os.getpid()
    cached: tuple[int, str] | None = getattr(_local, "worker", None)
    if cached is None or cached[0] != pid:
        cached = _local.worker = (pid, f"{pid}:{threading.current_thread().name}")
    return cached[1]


def invoke(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    ctx: Any,
    log_path: str | None = None,
    attempt: int | None = None,
    trace: dict[str, str] | None = None,
) -> Invocation:
    """Call one step in a worker; an ``async def`` step runs on an event loop of its own.

    ``log_path``: where the step's own output (prints, logging records) is captured, appended
    under a header line naming the attempt (``attempt``, else ``ctx.attempt`` when there is a
    ctx). The file is opened on the first write only; see :mod:`flowkit.capture`.
    ``trace``: the step span's context (W3C ``traceparent`` headers), made current while the
    step runs, so that spans it creates are children of the step's span.
    """
    with _Attempt(ctx, log_path, attempt, trace) as a:
        out = fn(**kwargs)
        if type(out) not in _PLAIN and inspect.isawaitable(out):
            import asyncio  # only for a sync step that returns an awaitable

            out = asyncio.run(_await(out))
        a.out = out
    return a.result()


def invoke_here(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    ctx: Any,
    log_path: str | None = None,
    attempt: int | None = None,
    trace: dict[str, str] | None = None,
) -> Invocation:
    """:func:`invoke` for an attempt in the thread of a run's loop, inside its
    :func:`capture.session` (the inline executor): the same figures and log, with the root
    handler left attached for the run and no per-attempt wrapper object."""
    if trace or log_path is None:
        return invoke(fn, kwargs, ctx, log_path, attempt, trace)
    if attempt is None and ctx is not None:
        attempt = getattr(ctx, "attempt", None)
    start, cpu = time.time(), time.thread_time()
    used, used_token = usage.begin()
    sink, token = capture.route(log_path, attempt, start)
    try:
        out = fn(**kwargs)
        if type(out) not in _PLAIN and inspect.isawaitable(out):
            import asyncio  # only for a sync step that returns an awaitable

            out = asyncio.run(_await(out))
    except BaseException as exc:
        text = user_traceback(exc)  # as _Attempt.__exit__ does
        with contextlib.suppress(Exception):
            exc.flowkit_worker = _worker_id()  # type: ignore[attr-defined]
            exc.flowkit_traceback = text  # type: ignore[attr-defined]
        capture.failed(sink, exc, text)
        capture.unroute(sink, token)
        usage.end(used_token)
        raise
    capture.unroute(sink, token)
    usage.end(used_token)
    writes = ctx.writes if ctx is not None and ctx.writes else None
    cpu = time.thread_time() - cpu + used.cpu
    return (out, writes, start, time.time(), cpu, _worker_id(), used.peak_rss)


async def ainvoke(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    ctx: Any,
    log_path: str | None = None,
    attempt: int | None = None,
    trace: dict[str, str] | None = None,
) -> Invocation:
    """:func:`invoke` for an ``async def`` step on a shared event loop (see AsyncLoopExecutor).

    The loop interleaves steps, so the thread's CPU time is not the step's: only the CPU of
    processes it waited for is counted.
    """
    with _Attempt(ctx, log_path, attempt, trace) as a:
        a.out = await fn(**kwargs)
    return a.result(thread_cpu=False)


class AsyncLoopExecutor(Executor):
    """One event loop in a daemon thread, shared by the async steps of a run.

    ``submit(ainvoke, ...)`` schedules the coroutine on the loop and returns a
    ``concurrent.futures.Future``; cancelling that future cancels the step's task.
    """

    def __init__(self) -> None:
        import asyncio  # imported by the first async step only: `import flowkit` stays light

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="flowkit-asyncio", daemon=True
        )
        self._thread.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        import asyncio

        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self.loop)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        # cancel what is left (abandoned or timed-out steps) and let it unwind on the loop,
        # in its own context, before the loop stops
        import asyncio

        drained = asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop)
        drained.add_done_callback(lambda _: self.loop.call_soon_threadsafe(self.loop.stop))
        if wait:
            self._thread.join()
            self.loop.close()


async def _cancel_all() -> None:
    import asyncio

    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _await(aw: Any) -> Any:
    return await aw


class InlineExecutor(Executor):
    """Runs each submitted call immediately in the caller's thread; returns a finished Future."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return _Finished(*self.call(fn, *args, **kwargs))

    @staticmethod
    def call(
        fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> tuple[Any, BaseException | None]:
        """Run the call now: its result and None, or None and the exception it raised."""
        try:
            return fn(*args, **kwargs), None
        except BaseException as exc:  # the step's failure is data for the engine
            # sys.exit() in a step fails the step, as on every other executor; so does a
            # KeyboardInterrupt the step raised itself, but not a real Ctrl-C: that stops the run
            if isinstance(exc, KeyboardInterrupt) and stopping.signal_arrived():
                raise
            return None, exc


_SHARED_CONDITION = threading.Condition()


class _Finished(Future[Any]):
    """A Future born finished. Skips Future's per-instance lock, the main cost of a no-op step
    on the inline executor; nobody waits on a finished future, so one shared lock serves all."""

    def __init__(self, result: Any, exception: BaseException | None) -> None:
        self._condition = _SHARED_CONDITION
        self._state = "FINISHED"
        self._result = result
        self._exception = exception
        self._waiters: list[Any] = []
        self._done_callbacks: list[Any] = []


def make_executor(
    kind: str,
    workers: int,
    address: str | None = None,
    *,
    signals_to_parent: bool = False,
    cluster_wait: float = 60.0,
    state_dir: str | None = None,
) -> Executor:
    """The executor named ``kind`` with ``workers`` workers (``address``, ``cluster_wait``: of
    the Dask scheduler, see :class:`flowkit.dask_executor.DaskExecutor`).

    ``signals_to_parent``: the caller handles SIGINT/SIGTERM for the run (process workers then
    ignore the Ctrl-C a terminal also sends them). ``state_dir``: process workers let go of
    the files they inherited from under it (the journal, the run lock), so that only the
    process running the flow holds them.

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
        return process_pool(workers, signals_to_parent, state_dir)
    if kind == "dask":
        try:
            from .dask_executor import DaskExecutor
        except ImportError:
            raise ExecutorUnavailableError(
                "executor 'dask' needs the dask extra: pip install 'flowkit[dask]'"
            ) from None
        return DaskExecutor(address, workers, cluster_wait, attempt=invoke)
    raise UsageError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
