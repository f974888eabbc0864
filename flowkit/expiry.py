"""When an attempt fails, time runs out or a stop is asked: what the scheduler loop does about it.

A failed attempt is retried after its delay or fails its step (under fail-fast, the first
failure halts the run); step deadlines that pass fail their attempt (or retry it), a run deadline
stops the run, a signal asks for a stop, and at the end of the grace period what still runs is
killed (shell steps, process workers) or abandoned (threads). :class:`Expiry` holds these methods
of :class:`~flowkit.engine.Engine`; the deadlines themselves live in
:class:`~flowkit.timers.Timers`.
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from . import capture, stopping
from .dispatch import AttemptOutcome, Dispatcher
from .errors import RunStoppingError, StepTimeoutError
from .events import Event
from .graph import Node
from .options import RunOptions
from .outcomes import Outcomes
from .result import ErrorInfo, RunStatus, Status, StepResult
from .timers import Timers

__all__ = ["Expiry"]

log = logging.getLogger("flowkit")


class Expiry:
    """The engine's failed attempts, deadlines and stops (a base class of
    :class:`~flowkit.engine.Engine`)."""

    stop: RunStatus | None
    opts: RunOptions
    clock: Callable[[], float]
    timers: Timers[Future[Any]]
    wakeup: Future[None]
    dispatch: Dispatcher
    nodes: dict[str, Node]
    results: dict[str, StepResult]
    steps: Outcomes
    rng: random.Random
    halted_by: str | None

    if TYPE_CHECKING:  # the engine's own, used here

        def _free(self, name: str) -> None: ...

        def _release(self, finished: list[tuple[str, Event | None]]) -> None: ...

    def _expire(self, now: float) -> None:
        """Stop the attempts past their deadline (each fails or is retried), and the run at
        its deadline; at the end of the grace period, stop what still runs."""
        expired: list[tuple[str, Event | None]] = []
        for name, fut in self.timers.expired(now):
            how = self.dispatch.stop(fut)
            if how is None:
                continue  # that attempt had finished
            self._free(name)
            timeout = self.nodes[name].spec.timeout
            if how == "attempt abandoned":
                log.warning(
                    "step %r timed out after %gs; its thread was abandoned (Python cannot "
                    "stop a running thread) and keeps running in the background",
                    name,
                    timeout,
                )
            exc = StepTimeoutError(f"step {name!r} timed out after {timeout:g}s ({how})")
            attempt = self.results[name].attempts
            note = f"attempt {attempt} timed out after {timeout:g}s ({how})"
            capture.note(self.steps.log_path(name), note)  # the attempt cannot write it
            out = AttemptOutcome.failed(exc, True, self.dispatch.worker_of(fut))
            event = self._attempt_failed(name, out)
            if event is not None:
                expired.append((name, event))
        self._release(expired)
        if self.timers.run_expired(now):
            self.request_stop(RunStatus.TIMED_OUT)
        if self.dispatch.running and self.timers.grace_over(now):
            self.dispatch.stop_all()
            if self.stop is RunStatus.INTERRUPTED and self.opts.handle_signals:
                stopping.kill_all(final=False)  # shell steps, process workers

    def request_stop(self, status: RunStatus) -> None:
        """Stop starting steps; running ones get a grace period (none on a run timeout)."""
        if self.stop is None:
            self.stop = status
            grace = 0.0 if status is RunStatus.TIMED_OUT else self.opts.grace
            self.timers.stop(self.clock() + grace)
            if not self.wakeup.done():
                self.wakeup.set_result(None)

    def _stopped_by(self, name: str, exc: RunStoppingError) -> None:
        """An attempt could not finish because the run cannot go on (its cluster went away):
        nothing is journaled for it; the run stops and a resume runs the step again."""
        self.results[name].status = Status.RUNNING  # reported pending: "run interrupted"
        if self.stop is None:
            print(f"flowkit: {exc}", file=sys.stderr, flush=True)
            self.request_stop(RunStatus(exc.status))

    def _interrupted(self, signal_name: str) -> None:
        self.request_stop(RunStatus.INTERRUPTED)

    def _stopping_message(self) -> str:
        return (
            f"no new steps start; running steps get {self.opts.grace:g}s to finish, then they "
            "are stopped. Press Ctrl-C again to stop at once."
        )

    def _attempt_failed(self, name: str, out: AttemptOutcome) -> Event | None:
        """Schedule a retry (None) or fail the step (its event; the caller releases it)."""
        assert out.error is not None
        err = self.steps.attempt_failed(name, out)
        delay = None
        if self.stop is None:
            attempts = self.results[name].attempts
            delay = self.nodes[name].spec.retry.next_delay(attempts, out.error, self.rng)
        if delay is None:
            return self._fail(name, err, timed_out=out.timed_out, release=False)
        self.steps.retrying(name, err, delay, out.timed_out)
        self.timers.retry(name, self.clock() + delay)
        return None

    def _fail(
        self,
        name: str,
        err: ErrorInfo,
        *,
        timed_out: bool = False,
        reason: str = "",
        release: bool = True,
    ) -> Event:
        event = self.steps.failed(name, err, timed_out=timed_out, reason=reason)
        if self.opts.fail_fast and self.halted_by is None:
            self.halted_by = name
        if release:
            self._release([(name, event)])
        return event
