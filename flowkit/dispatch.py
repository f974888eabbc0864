"""Where attempts run: the run's executor and the side ones some steps need.

:class:`Dispatcher` owns every executor of a run (the one chosen by the user, plus an isolated
process per call, a daemon thread per call, a shared event loop for async steps), submits
attempts, counts free slots, stops attempts that must end early, and shuts everything down.
Every "which executor is this" question of the engine is answered here. An attempt comes back as
a frozen :class:`AttemptOutcome`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

from . import stopping
from .dsl import Step
from .executors import (
    AsyncLoopExecutor,
    InlineExecutor,
    ainvoke,
    invoke,
    invoke_here,
    make_executor,
)
from .graph import check_fit
from .isolate import DaemonThreadExecutor, IsolatedExecutor
from .shell import ShellTimeoutError

__all__ = ["DASK_IN_FLIGHT", "AttemptOutcome", "Dispatcher"]

log = logging.getLogger("flowkit")

#: Steps kept in flight per worker on Dask: its scheduler queues them, which hides the round trip
#: to the cluster (a few ms) that would otherwise idle the workers between steps.
DASK_IN_FLIGHT = 4


@dataclass(slots=True)
class AttemptOutcome:
    """How one attempt ended: its value (or the error it raised), where and when it ran, and what
    it used. ``timed_out``: the error is a timeout (a shell command killed at its deadline).

    Never changed once made (not ``frozen``, which makes one several times dearer to build)."""

    value: Any = None
    error: BaseException | None = None
    writes: dict[str, Any] | None = None
    start: float = 0.0
    end: float = 0.0
    cpu: float = 0.0
    worker: str | None = None
    peak_rss: int | None = None
    timed_out: bool = False

    @staticmethod
    def of(fut: Future[Any]) -> AttemptOutcome:
        """The outcome of a finished attempt's future."""
        exc = fut.exception()
        if exc is None:
            value, writes, start, end, cpu, worker, peak_rss = fut.result()
            return AttemptOutcome(value, None, writes, start, end, cpu, worker, peak_rss)
        return AttemptOutcome.failed(exc)

    @staticmethod
    def failed(
        exc: BaseException, timed_out: bool = False, worker: str | None = None
    ) -> AttemptOutcome:
        """An attempt that raised ``exc`` (or was stopped with it, on ``worker``)."""
        worker = getattr(exc, "flowkit_worker", None) or worker
        return AttemptOutcome(
            error=exc, worker=worker, timed_out=timed_out or isinstance(exc, ShellTimeoutError)
        )


class Dispatcher:
    """The executors of one run.

    Args:
        kind: the run's executor (``inline``, ``thread``, ``process``, ``dask``).
        workers: its number of workers.
        address: a Dask scheduler's address.
        steps: the specs of the run's steps (to map ``cpus=``/``memory=`` onto Dask resources).
        signals_to_parent: process workers leave SIGINT/SIGTERM to this process (the CLI's
            clean stop), see :func:`make_executor`.
        state_dir: the state folder, whose files process workers and isolated children let go
            of (they die with this process).

    Raises:
        UsageError / ExecutorUnavailableError: from :func:`make_executor`.
        ResourceHintError: a step needs more than the largest Dask worker offers.
    """

    def __init__(
        self,
        kind: str,
        workers: int,
        address: str | None,
        steps: Iterable[Step],
        *,
        signals_to_parent: bool = False,
        cluster_wait: float = 60.0,
        state_dir: str | None = None,
    ) -> None:
        self.kind = kind
        self.state_dir = state_dir
        self.executor = make_executor(
            kind,
            workers,
            address,
            signals_to_parent=signals_to_parent,
            cluster_wait=cluster_wait,
            state_dir=state_dir,
        )
        #: the cluster's address, dashboard and workers (for the report), or None
        self.capacity = {"inline": 1, "dask": DASK_IN_FLIGHT * workers}.get(kind, workers)
        #: attempts in flight, by future
        self.running: dict[Future[Any], str] = {}
        #: attempts left running in the background (threads cannot be killed)
        self.abandoned = 0
        self._isolated: IsolatedExecutor | None = None
        self._daemon: DaemonThreadExecutor | None = None
        self._async: AsyncLoopExecutor | None = None
        self._local = kind in ("inline", "thread")
        self.cluster: dict[str, Any] | None = None
        try:
            steps = list(steps)
            ship = getattr(self.executor, "ship", None)  # a cluster: code goes to its workers
            if ship is not None:
                ship(s.fn for s in steps)
                self.cluster = getattr(self.executor, "info", None)
            self._dask_resources = self._check_cluster_fit(steps)
        except BaseException:
            self.executor.shutdown(wait=False)
            raise

    def _check_cluster_fit(self, steps: Iterable[Step]) -> bool:
        """On Dask: map cpus/memory hints to worker resources, if the workers declare them."""
        offered = getattr(self.executor, "worker_resources", None)
        hinted = [s for s in steps if s.cpus or s.memory]
        if offered is None or not hinted:
            return False
        workers = offered()
        if not any("CPU" in w or "MEMORY" in w for w in workers):
            log.warning(
                "the Dask workers declare no CPU/MEMORY resources; cpus= and memory= "
                "hints are ignored (start workers with --resources 'CPU=8,MEMORY=32e9')"
            )
            return False
        check_fit(
            hinted,
            max(w.get("CPU", 0.0) for w in workers),
            max(w.get("MEMORY", 0.0) for w in workers),
            "the largest Dask worker",
            "Start workers with more: dask worker --resources 'CPU=8,MEMORY=32e9'.",
        )
        return True

    @property
    def limits_locally(self) -> bool:
        """Whether flowkit itself must hold cpus/memory hints to the machine (not on a cluster)."""
        return self.kind != "dask"

    def free(self) -> int:
        """How many more attempts may be submitted now."""
        return self.capacity - len(self.running)

    def runs_in_caller(self, spec: Step) -> bool:
        """Whether an attempt of ``spec`` runs in the calling thread, at submission."""
        # on the inline executor, only these steps need a side executor (see _side)
        return self.kind == "inline" and not (
            spec.isolate or spec.is_async or spec.timeout is not None
        )

    def _side(self, spec: Step) -> tuple[Executor, Callable[..., Any]] | None:
        """The side executor an attempt of ``spec`` needs, or None for the run's executor."""
        if spec.isolate or (spec.timeout is not None and self.kind == "process"):
            if self._isolated is None:
                self._isolated = IsolatedExecutor(state_dir=self.state_dir)
            return self._isolated, invoke
        if spec.is_async and self._local:  # async steps share one event loop; a timeout cancels
            if self._async is None:
                self._async = AsyncLoopExecutor()
            return self._async, ainvoke
        if spec.timeout is not None and self._local:
            if self._daemon is None:
                self._daemon = DaemonThreadExecutor()
            return self._daemon, invoke
        return None

    def call(self, args: tuple[Any, ...]) -> AttemptOutcome:
        """Run an attempt in the calling thread (see :meth:`runs_in_caller`), the run's loop
        inside its ``capture.session()``, and return how it ended: nothing is left in flight."""
        executor = self.executor
        if executor.__class__ is not InlineExecutor:
            return AttemptOutcome.of(executor.submit(invoke, *args))
        try:  # as InlineExecutor.call, without a Future to make and read back
            value, writes, start, end, cpu, worker, peak_rss = invoke_here(*args)
        except BaseException as exc:  # the step's failure is data for the engine
            if isinstance(exc, KeyboardInterrupt) and stopping.signal_arrived():
                raise  # a real Ctrl-C stops the run
            return AttemptOutcome.failed(exc)
        return AttemptOutcome(value, None, writes, start, end, cpu, worker, peak_rss)

    def submit(self, name: str, spec: Step, args: tuple[Any, ...]) -> Future[Any]:
        """Start an attempt of step ``name``: ``invoke(*args)`` where ``spec`` needs it to run."""
        side = None
        if spec.isolate or spec.timeout is not None or spec.is_async:
            side = self._side(spec)
        if side is not None:
            fut = side[0].submit(side[1], *args)
        elif self._dask_resources and (spec.cpus or spec.memory):
            need = {"CPU": spec.cpus or 0.0, "MEMORY": float(spec.memory or 0)}
            fut = self.executor.submit_with_resources(  # type: ignore[attr-defined]
                {k: v for k, v in need.items() if v}, invoke, *args
            )
        else:
            fut = self.executor.submit(invoke, *args)
        self.running[fut] = name
        return fut

    def finished(self) -> list[Future[Any]]:
        """The attempts in flight that have finished, without waiting."""
        return [f for f in self.running if f.done()]

    def wait(self, timeout: float | None, wakeup: Future[Any]) -> list[Future[Any]]:
        """Block until an attempt finishes, ``wakeup`` is set, or ``timeout`` seconds pass."""
        waited, _ = wait([*self.running, wakeup], timeout=timeout, return_when=FIRST_COMPLETED)
        running = self.running
        return [f for f in waited if f in running]

    def settle(self, fut: Future[Any]) -> tuple[str, AttemptOutcome]:
        """Take a finished attempt off the running set: its step and outcome."""
        return self.running.pop(fut), AttemptOutcome.of(fut)

    def stop(self, fut: Future[Any]) -> str | None:
        """End a running attempt early; says how (None if it already ended).

        Returns ``"its process group was killed"``, ``"attempt cancelled"`` (not started, or an
        async step's task) or ``"attempt abandoned"`` (a thread: Python cannot stop it).
        """
        if self.running.pop(fut, None) is None:
            return None
        kill = getattr(fut, "kill", None)
        if kill is not None:
            kill()
            return "its process group was killed"
        if fut.cancel():
            return "attempt cancelled"
        self.abandoned += 1
        return "attempt abandoned"

    @staticmethod
    def worker_of(fut: Future[Any]) -> str | None:
        """The worker an attempt was given when it was submitted (a timed step's own thread),
        if known: a stopped attempt cannot say where it ran."""
        worker = getattr(fut, "flowkit_worker", None)
        return worker if isinstance(worker, str) else None

    def stop_all(self) -> list[str]:
        """End every running attempt (the grace period is over); returns their steps."""
        names = []
        for fut, name in list(self.running.items()):
            kill = getattr(fut, "kill", None)
            if kill is not None:
                kill()
            else:
                fut.cancel()
                self.abandoned += 1
            names.append(name)
        self.running.clear()
        return names

    def shutdown(self, clean: bool) -> None:
        """Shut every executor down; wait for the run's own only when ``clean`` (nothing was
        abandoned or stopped)."""
        self.executor.shutdown(wait=clean and not self.abandoned, cancel_futures=True)
        for side in (self._daemon, self._async):
            if side is not None:
                side.shutdown(wait=False)
