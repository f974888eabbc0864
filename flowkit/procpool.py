"""The ``process`` executor: the stdlib process pool, whose workers die with flowkit, sending
each call with cloudpickle; and the check, before a run, that the steps can travel.

Process workers die with the process that started them (see :mod:`flowkit.orphans`), and an
exception that cannot be pickled comes back as a stand-in (see :mod:`flowkit.remote`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Any

from . import orphans, stopping
from .errors import UnpicklableStepError
from .remote import portable

__all__ = ["call_portable", "check_picklable", "process_pool"]


def call_portable(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a worker process; an exception that would not pickle back is
    replaced by its stand-in (:func:`flowkit.remote.portable`)."""
    try:
        return fn(*args, **kwargs)
    except BaseException as exc:
        standin = portable(exc)
        if standin is exc:
            raise
        raise standin from None


def _run_pickled(payload: bytes) -> Any:
    fn, args, kwargs = pickle.loads(payload)
    return call_portable(fn, *args, **kwargs)


def process_pool(workers: int, signals_to_parent: bool, state_dir: str | None) -> Executor:
    """A ``_ProcessPool`` (below); the class (and multiprocessing) is made with the first one,
    so that ``import flowkit`` does not load multiprocessing."""
    pool_class = _define_process_pool()
    return pool_class(workers, signals_to_parent, state_dir)  # type: ignore[call-arg]


@functools.cache
def _define_process_pool() -> type[Executor]:
    from concurrent.futures import ProcessPoolExecutor

    class _ProcessPool(ProcessPoolExecutor):
        """The stdlib process pool, whose workers a hard stop of flowkit can kill. Each call is sent
        with cloudpickle: steps made by factory functions (closures), lambdas and steps defined in
        ``__main__`` travel by value.

        With ``signals_to_parent``, the workers leave Ctrl-C to the parent (a terminal sends it to
        every process of the group), which gives running steps their grace period.
        """

        def __init__(self, workers: int, signals_to_parent: bool, state_dir: str | None) -> None:
            super().__init__(
                max_workers=workers,
                initializer=_pool_worker_init,
                initargs=(signals_to_parent, os.getpid(), state_dir),
            )
            self._token = stopping.register(self.kill_workers)

        def kill_workers(self, wait: float = 1.0) -> None:
            """SIGTERM every worker: each kills the processes its steps started, then exits. Those
            still alive after ``wait`` seconds (a step stuck in C code) get SIGKILL."""
            procs = list((getattr(self, "_processes", None) or {}).values())
            for p in procs:
                with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
                    os.kill(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + wait
            for p in procs:
                with contextlib.suppress(Exception):
                    p.join(max(0.0, deadline - time.monotonic()))
                    if p.is_alive():
                        p.kill()

        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
            import cloudpickle

            return super().submit(_run_pickled, cloudpickle.dumps((fn, args, kwargs)))

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            stopping.forget(self._token)
            super().shutdown(wait=wait, cancel_futures=cancel_futures)

    return _ProcessPool


def _pool_worker_init(signals_to_parent: bool, parent: int, state_dir: str | None) -> None:
    stopping.die_with_children_on_sigterm()
    signal.signal(
        signal.SIGINT, _ignore_signal if signals_to_parent else signal.default_int_handler
    )
    orphans.worker_init(parent, state_dir)  # dies with flowkit, holds no state file


def _ignore_signal(signum: int, frame: Any) -> None:
    """A handler that does nothing (unlike SIG_IGN, not inherited by programs a step runs)."""


def check_picklable(steps: Iterable[tuple[str, Callable[..., Any]]], executor: str) -> None:
    """Check, before a run starts, that every step function can be sent to other processes.

    Raises:
        UnpicklableStepError: naming the first step that cannot.
    """
    import cloudpickle

    for name, fn in steps:
        try:
            cloudpickle.dumps(fn)
        except Exception as exc:
            raise UnpicklableStepError(name, executor, f"{type(exc).__name__}: {exc}") from None
