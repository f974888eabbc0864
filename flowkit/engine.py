"""The scheduler loop of one run, over four parts that each do one thing.

* :class:`~flowkit.readyset.ReadySet` says which steps can be decided (all upstreams finished)
  and which wait for a slot;
* :func:`~flowkit.decide.decide_step` decides each of them (skip, restore, run, fan out, gather,
  fail): the same function the dry run uses;
* :class:`~flowkit.dispatch.Dispatcher` runs attempts on the executors and hands back outcomes;
* :class:`~flowkit.timers.Timers` holds retry delays, step deadlines, the run deadline, the grace.

The loop: take what is decidable and decide it; submit what may run; wait (in
``wait(FIRST_COMPLETED)``, with a timeout only when a timer is due) for an attempt to finish; settle
the finished ones; commit the journal; emit their events; only then release their dependents.
Only this loop writes the journal and emits events; a retry goes back into the queue when its
delay is due, so it never occupies a worker while it waits.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from typing import Any

from . import capture
from .codec import OutputMissingError, OutputUntrustedError, Serializer
from .decide import (
    Expand,
    Fail,
    Gather,
    Restore,
    Run,
    Skip,
    Verdict,
    decide_step,
    fail_fast_blocks,
    restore_failed,
    settle_condition,
)
from .dispatch import AttemptOutcome, Dispatcher
from .errors import RunStoppingError, StateError, StepTimeoutError
from .events import Event, RunFinished, RunStarted, StepStarted, emit
from .expiry import Expiry
from .fanout import FanOutError
from .gcpause import freeze_more
from .graph import FlowGraph, Node, machine_resources
from .interrupt import interruptible
from .limits import Limits
from .listening import AttemptTracer
from .options import RunOptions, Selection
from .outcomes import Outcomes
from .readyset import ReadySet, Successors
from .result import ErrorInfo, RunResult, RunStatus
from .runfolder import finish, set_aside_orphans
from .serializers import default_registry
from .store import LoadedState, RunStore
from .timers import Timers

__all__ = ["AttemptTracer", "Engine", "StepTimeoutError"]


log = logging.getLogger("flowkit")


class Engine(Expiry):
    """Runs one flow run. Not reusable: build one per run.

    Args:
        flow: the flow's name.
        graph: its validated graph.
        run_id: the run's id.
        params: the resolved run parameters.
        store: the run's state on disk.
        options: how to run (executor, workers, fail-fast, deadlines, clock, ...).
        callbacks: receive every event.
        selection: ``--rerun`` / ``--only`` resolved against ``graph``.
        serializer: stores outputs that are not inline JSON, for steps without their own
            (default: :func:`~flowkit.serializers.default_registry`, by type).
    """

    def __init__(
        self,
        flow: str,
        graph: FlowGraph,
        run_id: str,
        params: Mapping[str, Any],
        store: RunStore,
        options: RunOptions,
        callbacks: list[Callable[[Event], Any]],
        *,
        selection: Selection | None = None,
        serializer: Serializer | None = None,
        tracer: AttemptTracer | None = None,
    ) -> None:
        self.tracer = tracer
        self.clock = options.clock
        self.sleep = options.sleep or self._pause
        self.flow, self.graph, self.run_id, self.store = flow, graph, run_id, store
        self.opts, self.callbacks = options, callbacks
        self.selection = selection or Selection()
        self.rng = random.Random(options.seed)
        self.steps = Outcomes(
            flow, run_id, dict(params), graph, store, serializer or default_registry(), callbacks
        )
        self.nodes, self.results = self.steps.nodes, self.steps.results
        self.ready = ReadySet(
            {n: len(node.upstream) for n, node in self.nodes.items()}, Successors(self.nodes)
        )
        self.timers: Timers[Future[Any]] = Timers()
        self.halted_by: str | None = None
        self.stop: RunStatus | None = None
        self.wakeup: Future[None] = Future()
        self.state = LoadedState()
        self._dirty = False  # journal records buffered since the last commit
        # on a cluster, Dask places steps by worker resources; locally, flowkit does
        local = options.kind != "dask"
        cpus, memory = machine_resources() if local else (float("inf"), 2**62)
        self.limits = Limits(graph.pools, cpus, memory)
        self.limited = bool(graph.pools) or (
            local and any(n.spec.cpus or n.spec.memory for n in graph.nodes.values())
        )

    # --- the run --------------------------------------------------------------------------------

    def run(self, fresh: bool = False) -> RunResult:
        """Run (or resume) the run; ``fresh`` moves its old state aside first."""
        started = time.time()
        t0 = self.clock()
        with self.store.lock():
            if fresh:
                self.store.archive()
            else:
                set_aside_orphans(self.store)
            self.state = self.store.load()
            freeze_more()  # the loaded journal too (see Flow.run)
            result = self._execute(started, t0)
        emit(self.callbacks, RunFinished(self.run_id, result.status, time.time(), result))
        return result

    def _execute(self, started: float, t0: float) -> RunResult:
        resumed = bool(self.state.steps)
        opts, steps = self.opts, self.steps
        # before the journal is touched: an unknown executor or a cluster too small stops here
        self.dispatch = Dispatcher(
            opts.kind,
            opts.workers,
            opts.address,
            (n.spec for n in self.nodes.values()),
            signals_to_parent=opts.handle_signals,
            cluster_wait=opts.cluster_wait,
            state_dir=str(self.store.root),
        )
        steps.cost_rates = opts.cost_rates
        try:
            self.store.open()
        except BaseException:
            self.dispatch.shutdown(clean=False)
            raise
        steps.ledger.run_started(self.flow, self.run_id, steps.params, started)
        self.store.commit()
        self.store.write_graph(self.graph.shape_json())
        emit(
            self.callbacks,
            RunStarted(self.run_id, self.flow, steps.params, len(self.nodes), started, resumed),
        )
        self.timers.run_deadline = t0 + opts.timeout if opts.timeout else None
        try:
            with (
                interruptible(
                    self._interrupted, self._stopping_message, opts.handle_signals, opts.grace
                ),
                capture.session(),
            ):
                self._loop()
        except StateError:
            self.dispatch.abandoned += 1  # the state cannot be written: do not wait for steps
            raise
        finally:
            self.dispatch.shutdown(clean=self.stop is None)
        result = steps.result(self.stop, started, self.clock() - t0)
        result.cluster = self.dispatch.cluster
        if self.tracer is not None:
            result.trace_id = self.tracer.trace_id
        if opts.cost_rates is not None:
            result.cost_rates = opts.cost_rates.to_json()
        finish(self.store, steps, result, started)
        return result

    def _loop(self) -> None:
        """Decide what is decidable, submit what may run, wait for an attempt or a timer, settle
        what finished; until nothing is left to do (or a stop leaves nothing running)."""
        dispatch, timers, clock, ready = self.dispatch, self.timers, self.clock, self.ready
        while True:
            self._decide_all()
            self._fill()
            if dispatch.running:
                done = dispatch.finished()
                if not done:
                    self._commit()  # before blocking: `status` sees what runs
                    done = dispatch.wait(timers.next_wakeup(clock()), self.wakeup)
                if done:
                    self._settled([dispatch.settle(fut) for fut in done])
                if not timers.idle():
                    self._expire(clock())
            elif self.stop is not None:
                break
            elif not ready.has_decidable():  # steps run in this thread released others
                due = timers.next_retry()
                if due is None:
                    break
                self.sleep(max(0.0, due - clock()))
            if timers.retries_pending():
                due_now = timers.due(clock())
                if self.stop is None:
                    ready.requeue(due_now)

    def _pause(self, seconds: float) -> None:
        """Wait for a retry's delay; cut short when the run is asked to stop (a signal)."""
        wait([self.wakeup], timeout=seconds)

    # --- deciding -------------------------------------------------------------------------------

    def _decide_all(self) -> None:
        take = self.ready.take_decidable
        while self.stop is None and (name := take()) is not None:
            self._decide(name)

    def _decide(self, name: str) -> None:
        node, steps = self.nodes[name], self.steps
        verdict = decide_step(
            node,
            self.results,
            self.state.steps.pop(name, None),  # decided once: the loaded record is not kept
            steps.inputs,
            self.selection,
            halted_by=self.halted_by,
            instances=steps.fanout.get(name),
            shared=steps.shared,
        )
        if type(verdict) is Restore:
            try:
                steps.restored(name, verdict.record, bool(self.dispatch.running), verdict.shared)
                return self.ready.done(name, node.downstream)
            except OutputMissingError as exc:
                if verdict.shared:
                    log.warning("step %r: its shared cache entry is not used: %s", name, exc)
                elif isinstance(exc, OutputUntrustedError):
                    log.warning("step %r re-runs: %s", name, exc)
                verdict = restore_failed(node, verdict, str(exc), self.selection)
        if type(verdict) is Run and verdict.conditional:
            verdict = settle_condition(verdict, steps.condition(node))
        self._apply(node, verdict)

    def _apply(self, node: Node, verdict: Verdict) -> None:
        name = node.name
        if type(verdict) is Run:
            self.results[name].reason = verdict.reason
            self.ready.queue(name)
        elif type(verdict) is Skip:
            self.steps.skipped(
                name,
                verdict.reason,
                journal=verdict.journal,
                remember=verdict.remember,
                status=verdict.status,
            )
            self.ready.done(name)
        elif type(verdict) is Expand:
            try:
                self.ready.expand(name, self.steps.expanded(node))
            except FanOutError as exc:
                self._fail(name, ErrorInfo.of(exc))
        elif type(verdict) is Gather:
            self.steps.gathered(node, verdict)
            self.ready.done(name)
        elif type(verdict) is Fail:
            self._fail(name, verdict.error, reason=verdict.reason)

    # --- running --------------------------------------------------------------------------------

    def _fill(self) -> None:
        dispatch, ready = self.dispatch, self.ready
        while dispatch.free() > 0 and self.stop is None and (name := ready.take()) is not None:
            node = self.nodes[name]
            halted = fail_fast_blocks(node, self.halted_by)
            if halted is not None:
                self.steps.skipped(name, halted)
                ready.done(name)
                self._decide_all()
                continue
            if self.limited and not self.limits.admit(name, node.spec):
                continue  # queued in its pool; handed back by _free
            self._submit(node)
            if ready.has_decidable():  # it ran here and released others: decide them now
                self._decide_all()

    def _free(self, name: str) -> None:
        """An attempt of ``name`` ended: give back its pool slot and resources."""
        if self.limited:
            self.ready.requeue(self.limits.release(self.nodes[name].spec))

    def _submit(self, node: Node) -> None:
        name, spec, steps = node.name, node.spec, self.steps
        now = time.time()
        inline = self.dispatch.runs_in_caller(spec)
        # An attempt that runs here, which no listener watches and which cannot be retried, gets
        # no `start` record: its `done` record is the next one the journal gets.
        r = steps.started(
            name, now, journal=not inline or bool(self.callbacks) or spec.retry.retries > 0
        )
        kwargs = steps.kwargs(node, r.attempts)
        if self.callbacks:
            emit(self.callbacks, StepStarted(self.run_id, name, r.attempts, now, r.reason))
        args: tuple[Any, ...] = (
            spec.fn,
            kwargs,
            kwargs.get("ctx"),
            steps.log_path(name),
            r.attempts,
        )
        if self.tracer is not None:  # the step's span goes with the attempt
            args = (*args, self.tracer.attempt_context(name, r.attempts))
        if self._dirty or inline:
            # completions before this start, durable; an attempt in this thread, visible to
            # `status` while it runs (when it has a `start` record)
            self._commit()
        if inline:
            outcome = self.dispatch.call(args)
            if outcome.error is None and not self.callbacks and not self.limited:
                # the inline path: no listener to tell, no pool slot to give back; its record
                # is committed before the next attempt starts (see _release)
                unstorable = steps.succeeded(name, outcome, busy=bool(self.dispatch.running))
                if unstorable is None:
                    self._dirty = True
                    self.ready.done(name, node.downstream)
                    return
                outcome = AttemptOutcome.failed(unstorable)
            self._settled([(name, outcome)])
            return
        fut = self.dispatch.submit(name, spec, args)
        if spec.timeout is not None:
            self.timers.deadline(name, self.clock() + spec.timeout, fut)

    def _settled(self, outcomes: list[tuple[str, AttemptOutcome]]) -> None:
        finished: list[tuple[str, Event | None]] = []
        steps = self.steps
        for name, outcome in outcomes:
            self._free(name)
            if isinstance(outcome.error, RunStoppingError):
                self._stopped_by(name, outcome.error)
                continue
            if outcome.error is None:
                unstorable = steps.succeeded(name, outcome, busy=bool(self.dispatch.running))
                if unstorable is None:
                    finished.append((name, steps.succeeded_event(name) if self.callbacks else None))
                    continue
                outcome = AttemptOutcome.failed(unstorable)  # the output could not be stored
            event = self._attempt_failed(name, outcome)
            if event is not None:
                finished.append((name, event))
        self._release(finished)

    def _release(self, finished: list[tuple[str, Event | None]]) -> None:
        """Emit the events of finished steps and make their dependents decidable.

        Their records are durable before anyone is told (a listener never reports a step the
        journal could lose). With no listener, the commit waits until the next attempt starts
        or the loop blocks, so no dependent can start before them either: one flush per step.
        """
        if not finished:
            return
        self._dirty = True
        callbacks, done = self.callbacks, self.ready.done
        if callbacks:
            self._commit()
        for name, event in finished:
            if callbacks and event is not None:
                emit(callbacks, event)
            done(name)

    def _commit(self) -> None:
        """Make the buffered journal records durable (if any were written since last time)."""
        self.steps.ledger.flush_cached()
        if self._dirty:
            self.store.commit()
            self._dirty = False
        else:
            self.store.flush()
