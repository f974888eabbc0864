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

import inspect
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from typing import Any

from . import capture
from .codec import OutputMissingError, PickleSerializer, Serializer, decode, encode
from .context import Context
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
from .events import (
    Event,
    RunFinished,
    RunStarted,
    StepCached,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
    emit,
)
from .fanout import FanOutError, gather_hash, instances
from .gcpause import freeze_more
from .graph import FlowGraph, Node, machine_resources
from .interrupt import interruptible
from .keys import safe_name
from .ledger import Ledger
from .limits import Limits
from .options import RunOptions, Selection
from .readyset import ReadySet
from .result import ErrorInfo, RunResult, RunStatus, Status, StepResult
from .resume import Inputs, KeyMaker
from .store import LoadedState, RunStore, duration_of
from .timers import Timers

__all__ = ["Engine", "StepTimeoutError"]

log = logging.getLogger("flowkit")


class StepTimeoutError(TimeoutError):
    """An attempt ran past its step's ``timeout``."""


class Engine:
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
        serializer: stores outputs that are not inline JSON (default: pickle, authenticated).
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
    ) -> None:
        self.clock = options.clock
        self.sleep = options.sleep or self._pause
        self.flow, self.graph, self.run_id = flow, graph, run_id
        self.params = dict(params)
        self.store, self.opts, self.callbacks = store, options, callbacks
        self.selection = selection or Selection()
        self.serializer = serializer or PickleSerializer()
        self.rng = random.Random(options.seed)
        self.keys = KeyMaker(self.params)
        self.nodes = dict(graph.nodes)  # fan-out instances are added at run time
        self.results: dict[str, StepResult] = {n: StepResult(n) for n in graph.order}
        self.ready = ReadySet(
            {n: len(node.upstream) for n, node in self.nodes.items()}, _Downstream(self.nodes)
        )
        self.timers: Timers[Future[Any]] = Timers()
        self.outputs: dict[str, Any] = {}
        self.hashes: dict[str, str] = {}
        self.step_keys: dict[str, str] = {}
        self.inputs_of: dict[str, Inputs] = {}  # turned into record fields only when journaled
        self.ctx_store: dict[str, Any] = {}
        self.fanout: dict[str, list[str]] = {}
        self.halted_by: str | None = None
        self.stop: RunStatus | None = None
        self.wakeup: Future[None] = Future()
        self.state = LoadedState()
        self._dirty = False  # journal records buffered since the last commit
        self._failed_on: dict[str, str | None] = {}  # the worker of a step's last failed attempt
        self._logs = str(store.logs)
        self._stems: dict[str, str] = {}
        self._when_params: dict[Any, frozenset[str] | None] = {}
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
            self.state = self.store.load()
            freeze_more()  # the loaded journal too (see Flow.run)
            result = self._execute(started, t0)
        emit(self.callbacks, RunFinished(self.run_id, result.status, time.time(), result))
        return result

    def _execute(self, started: float, t0: float) -> RunResult:
        resumed = bool(self.state.steps)
        opts = self.opts
        # before the journal is touched: an unknown executor or a cluster too small stops here
        self.dispatch = Dispatcher(
            opts.kind, opts.workers, opts.address, (n.spec for n in self.nodes.values())
        )
        self.store.open()
        self.ledger = Ledger(self.store)
        self.ledger.run_started(self.flow, self.run_id, self.params, started)
        self.store.commit()
        emit(
            self.callbacks,
            RunStarted(self.run_id, self.flow, self.params, len(self.nodes), started, resumed),
        )
        self.timers.run_deadline = t0 + opts.timeout if opts.timeout else None
        try:
            with (
                interruptible(self._interrupted, self._stopping_message, opts.handle_signals),
                capture.session(),
            ):
                self._loop()
        finally:
            self.dispatch.shutdown(clean=self.stop is None)
        result = self._result(started, self.clock() - t0)
        self.ledger.run_ended(result.status.value, time.time(), result.counts())
        self.store.write_snapshot(
            {
                "flow": self.flow,
                "run_id": self.run_id,
                "params": self.params,
                "status": result.status.value,
                "started": started,
                "duration_s": result.duration_s,
                "counts": result.counts(),
                "steps": {n: r.status.value for n, r in self.results.items()},
            }
        )
        self.store.write_report(result.to_json())
        return result

    def _loop(self) -> None:
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
                    self._settle(done)
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

    def _stem(self, name: str) -> str:
        """``safe_name(name)``, computed once per step (file names of its log and outputs)."""
        stem = self._stems.get(name)
        if stem is None:
            stem = self._stems[name] = safe_name(name)
        return stem

    # --- deciding -------------------------------------------------------------------------------

    def _decide_all(self) -> None:
        take = self.ready.take_decidable
        while self.stop is None and (name := take()) is not None:
            self._decide(name)

    def _inputs(self, node: Node) -> Inputs:
        inputs = self.keys.inputs(node, self.hashes, self.step_keys)
        self.step_keys[node.name] = inputs.key
        self.inputs_of[node.name] = inputs
        return inputs

    def _decide(self, name: str) -> None:
        node = self.nodes[name]
        verdict = decide_step(
            node,
            self.results,
            self.state.steps.pop(name, None),  # decided once: the loaded record is not kept
            self._inputs,
            self.selection,
            halted_by=self.halted_by,
            instances=self.fanout.get(name),
        )
        if type(verdict) is Restore:
            try:
                return self._restore(name, verdict.record)
            except OutputMissingError as exc:
                verdict = restore_failed(node, verdict, str(exc), self.selection)
        if type(verdict) is Run and verdict.conditional:
            verdict = settle_condition(verdict, self._condition(node))
        self._apply(node, verdict)

    def _apply(self, node: Node, verdict: Verdict) -> None:
        name = node.name
        if type(verdict) is Run:
            self.results[name].reason = verdict.reason
            self.ready.queue(name)
        elif type(verdict) is Skip:
            self._skip(
                name,
                verdict.reason,
                journal=verdict.journal,
                record=verdict.remember,
                status=verdict.status,
            )
        elif type(verdict) is Expand:
            self._expand(node)
        elif type(verdict) is Gather:
            self._gather(node, verdict)
        elif type(verdict) is Fail:
            self._fail(name, verdict.error, reason=verdict.reason)

    def _condition(self, node: Node) -> bool | BaseException:
        try:
            return bool(node.spec.when(**self._when_kwargs(node)))  # type: ignore[misc]
        except Exception as exc:
            return exc

    def _expand(self, node: Node) -> None:
        name = node.name
        mapped = self.outputs.get(node.spec.map_over) if node.spec.map_over else None
        try:
            made = instances(node, mapped)
        except FanOutError as exc:
            self._fail(name, ErrorInfo.of(exc))
            return
        self.fanout[name] = [i.name for i in made]
        for inst in made:
            self.nodes[inst.name] = inst
            self.results[inst.name] = StepResult(inst.name)
        self.ready.expand(name, self.fanout[name])

    def _gather(self, node: Node, verdict: Gather) -> None:
        name, results = node.name, self.results
        r = results[name]
        r.output = [self.outputs[n] for n in verdict.instances]
        r.attempts = 1
        r.status = Status.CACHED if verdict.cached else Status.SUCCEEDED
        r.reason = f"gathered {len(verdict.instances)} instance(s)"
        h = gather_hash([self.hashes[n] for n in verdict.instances])
        self.outputs[name], self.hashes[name] = r.output, h
        self.step_keys[name] = h
        self.ledger.gathered(name, h, verdict.total, r.reason)
        now = time.time()
        event: Event = (
            StepCached(self.run_id, name, now, 0.0, 1)
            if verdict.cached
            else StepSucceeded(self.run_id, name, 1, now, 0.0, r.reason)
        )
        emit(self.callbacks, event)
        self.ready.done(name)

    def _restore(self, name: str, prev: Mapping[str, Any]) -> None:
        value = decode(prev, self.store.outputs, self.serializer)
        ctx = prev.get("ctx")
        if ctx is not None:
            self._ctx_update(decode(ctx, self.store.ctx_outputs, self.serializer) or {})
        r = self.results[name]
        r.status, r.output, r.reason = Status.CACHED, value, "unchanged"
        r.attempts = int(prev.get("attempts", 1))
        r.duration_s = duration_of(prev) or 0.0
        r.started, r.ended = prev.get("start"), prev.get("end")
        self.outputs[name] = value
        self.hashes[name] = str(prev.get("hash", "-"))
        self.inputs_of.pop(name, None)
        self.ledger.cached(name)
        if self.callbacks:
            emit(
                self.callbacks, StepCached(self.run_id, name, time.time(), r.duration_s, r.attempts)
            )
        self.ready.done(name)

    def _ctx_update(self, writes: Mapping[str, Any]) -> None:
        if self.dispatch.running:  # steps running now read the store: give them a stable view
            self.ctx_store = {**self.ctx_store, **writes}
        else:
            self.ctx_store.update(writes)

    def _skip(
        self,
        name: str,
        reason: str,
        *,
        journal: bool = True,
        record: bool = False,
        status: Status = Status.SKIPPED,
    ) -> None:
        """Not run: ``skipped``, or ``upstream_failed`` when a failure upstream is the cause."""
        r = self.results[name]
        r.status, r.reason = status, reason
        if record:  # a `when=` decision: remembered, so a resume decides the same way
            self.ledger.condition_false(name, reason, self.inputs_of.pop(name))
        else:
            self.inputs_of.pop(name, None)
            if journal:
                self.ledger.skipped(name, reason, status)
        emit(self.callbacks, StepSkipped(self.run_id, name, time.time(), reason, status))
        self.ready.done(name)

    def _when_kwargs(self, node: Node) -> dict[str, Any]:
        pred = node.spec.when
        assert pred is not None
        if pred not in self._when_params:
            try:
                ps = inspect.signature(pred).parameters.values()
                wants_all = any(p.kind is p.VAR_KEYWORD for p in ps)
                self._when_params[pred] = None if wants_all else frozenset(p.name for p in ps)
            except (TypeError, ValueError):
                self._when_params[pred] = None
        wanted = self._when_params[pred]
        kwargs = self._kwargs(node, attempt=1)
        return kwargs if wanted is None else {k: v for k, v in kwargs.items() if k in wanted}

    # --- running --------------------------------------------------------------------------------

    def _kwargs(self, node: Node, attempt: int) -> dict[str, Any]:
        outputs = self.outputs
        kwargs = {d: outputs.get(d) for d in node.data_deps}
        kwargs.update(self.keys.param_values(node))
        if node.bindings:
            kwargs.update(node.bindings)
        if node.spec.takes_ctx:
            kwargs["ctx"] = Context(
                self.run_id, self.flow, node.name, attempt, self.params, self.ctx_store
            )
        return kwargs

    def _fill(self) -> None:
        dispatch, ready = self.dispatch, self.ready
        while dispatch.free() > 0 and self.stop is None and (name := ready.take()) is not None:
            node = self.nodes[name]
            halted = fail_fast_blocks(node, self.halted_by)
            if halted is not None:
                self._skip(name, halted)
                self._decide_all()
                continue
            if self.limited and not self.limits.admit(name, node.spec):
                continue  # queued in its pool; handed back by _free
            self._submit(node)

    def _free(self, name: str) -> None:
        """An attempt of ``name`` ended: give back its pool slot and resources."""
        if self.limited:
            self.ready.requeue(self.limits.release(self.nodes[name].spec))

    def _submit(self, node: Node) -> None:
        name, spec = node.name, node.spec
        r = self.results[name]
        r.attempts += 1
        r.status = Status.RUNNING
        kwargs = self._kwargs(node, r.attempts)
        now = time.time()
        if r.started is None:
            r.started = now
        self.ledger.started(name, r.attempts, now)
        if self.callbacks:
            emit(self.callbacks, StepStarted(self.run_id, name, r.attempts, now, r.reason))
        log_path = f"{self._logs}{os.sep}{self._stem(name)}.log"
        args = (spec.fn, kwargs, kwargs.get("ctx"), log_path, r.attempts)
        inline = self.dispatch.runs_in_caller(spec)
        if self._dirty or inline:
            # completions before this start, durable; an attempt in this thread, visible to
            # `status` while it runs
            self._commit()
        if inline:
            self._settled([(name, self.dispatch.call(args))])
            return
        fut = self.dispatch.submit(name, spec, args)
        if spec.timeout is not None:
            self.timers.deadline(name, self.clock() + spec.timeout, fut)

    def _settle(self, done: list[Future[Any]]) -> None:
        self._settled([self.dispatch.settle(fut) for fut in done])

    def _settled(self, outcomes: list[tuple[str, AttemptOutcome]]) -> None:
        finished: list[tuple[str, Event | None]] = []
        for name, outcome in outcomes:
            self._free(name)
            if outcome.error is None:
                unstorable = self._succeeded(name, outcome)
                if unstorable is None:
                    finished.append((name, self._succeeded_event(name) if self.callbacks else None))
                    continue
                outcome = AttemptOutcome.failed(unstorable)  # the output could not be stored
            event = self._attempt_failed(name, outcome)
            if event is not None:
                finished.append((name, event))
        self._release(finished)

    def _release(self, finished: list[tuple[str, Event | None]]) -> None:
        """Emit the events of finished steps and make their dependents decidable.

        Their records are in the journal's buffer; :meth:`_commit` makes them durable before
        any attempt starts (or the loop blocks), so no dependent can start before them.
        """
        if not finished:
            return
        self._dirty = True
        callbacks, done = self.callbacks, self.ready.done
        for name, event in finished:
            if callbacks and event is not None:
                emit(callbacks, event)
            done(name)

    def _commit(self) -> None:
        """Make the buffered journal records durable (if any were written since last time)."""
        self.ledger.flush_cached()
        if self._dirty:
            self.store.commit()
            self._dirty = False
        else:
            self.store.flush()

    def _succeeded(self, name: str, out: AttemptOutcome) -> BaseException | None:
        """Journal a successful attempt; returns None, or the error if its output can't be
        stored."""
        stem = self._stem(name)
        try:
            enc = encode(out.value, self.store.outputs, stem, self.serializer)
            enc_ctx = (
                encode(out.writes, self.store.ctx_outputs, stem, self.serializer)
                if out.writes
                else None
            )
        except Exception as exc:
            return RuntimeError(
                f"step {name!r} returned a value that cannot be stored ({type(exc).__name__}: "
                f"{exc}); return something picklable, or configure a serializer"
            )
        r = self.results[name]
        r.status, r.output, r.ended = Status.SUCCEEDED, out.value, out.end
        r.duration_s = out.end - out.start
        self.ledger.succeeded(
            r,
            self.inputs_of.pop(name),
            out.start,
            out.end,
            out.cpu,
            out.worker or "",
            out.peak_rss,
            enc,
            enc_ctx,
        )
        if out.writes:
            self._ctx_update(out.writes)
        self.outputs[name] = out.value
        self.hashes[name] = enc.hash
        return None

    def _succeeded_event(self, name: str) -> Event:
        r = self.results[name]
        assert r.ended is not None
        return StepSucceeded(self.run_id, name, r.attempts, r.ended, r.duration_s, r.reason)

    def _attempt_failed(self, name: str, out: AttemptOutcome) -> Event | None:
        """Schedule a retry (None) or fail the step (its event; the caller commits and emits)."""
        assert out.error is not None
        r = self.results[name]
        err = ErrorInfo.of(out.error)
        r.attempt_errors.append(err)
        self._failed_on[name] = out.worker
        delay = None
        if self.stop is None:
            delay = self.nodes[name].spec.retry.next_delay(r.attempts, out.error, self.rng)
        if delay is None:
            return self._fail(name, err, timed_out=out.timed_out, release=False)
        r.retry_delays.append(delay)
        self.ledger.retried(name, r.attempts, delay, err, out.timed_out)
        self.timers.retry(name, self.clock() + delay)
        emit(
            self.callbacks,
            StepRetrying(self.run_id, name, r.attempts, time.time(), err, delay, out.timed_out),
        )
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
        r = self.results[name]
        r.status = Status.TIMED_OUT if timed_out else Status.FAILED
        r.error, r.ended = err, time.time()
        if reason:
            r.reason = reason
        if r.started is not None:
            r.duration_s = r.ended - r.started
        self.ledger.failed(r, self.inputs_of.pop(name, None), self._failed_on.pop(name, None), err)
        if self.opts.fail_fast and self.halted_by is None:
            self.halted_by = name
        log_path = f"{self._logs}{os.sep}{self._stem(name)}.log"
        event = StepFailed(
            self.run_id, name, r.attempts, r.ended, r.duration_s, err, timed_out, log_path
        )
        if release:
            self._release([(name, event)])
        return event

    def _expire(self, now: float) -> None:
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
            event = self._attempt_failed(name, AttemptOutcome.failed(exc, timed_out=True))
            if event is not None:
                expired.append((name, event))
        self._release(expired)
        if self.timers.run_expired(now):
            self.request_stop(RunStatus.TIMED_OUT)
        if self.dispatch.running and self.timers.grace_over(now):
            self.dispatch.stop_all()

    # --- stopping -------------------------------------------------------------------------------

    def request_stop(self, status: RunStatus) -> None:
        """Stop starting steps; running ones get a grace period (none on a run timeout)."""
        if self.stop is None:
            self.stop = status
            grace = 0.0 if status is RunStatus.TIMED_OUT else self.opts.grace
            self.timers.stop(self.clock() + grace)
            if not self.wakeup.done():
                self.wakeup.set_result(None)

    def _interrupted(self, signal_name: str) -> None:
        self.request_stop(RunStatus.INTERRUPTED)

    def _stopping_message(self) -> str:
        return (
            f"no new steps start; waiting up to {self.opts.grace:g}s for "
            f"{len(self.dispatch.running)} running step(s). Press Ctrl-C again to stop at once."
        )

    # --- the result -----------------------------------------------------------------------------

    def _result(self, started: float, duration: float) -> RunResult:
        for r in self.results.values():
            if r.status in (Status.PENDING, Status.RUNNING):
                r.status = Status.PENDING
                if self.stop is RunStatus.INTERRUPTED:
                    r.reason = "run interrupted"
                elif self.stop is RunStatus.TIMED_OUT:
                    r.reason = "run timed out"
        if self.stop is not None:
            status = self.stop
        elif any(r.status.failed for r in self.results.values()):
            status = RunStatus.FAILED
        else:
            status = RunStatus.SUCCEEDED
        return RunResult(
            self.flow,
            self.run_id,
            self.params,
            self.results,
            status,
            started,
            duration,
            str(self.store.dir),
        )


class _Downstream(Mapping[str, tuple[str, ...]]):
    """The successors of each step, read from the (growing) node table."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: Mapping[str, Node]) -> None:
        self._nodes = nodes

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self._nodes[name].downstream

    def __iter__(self) -> Any:
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)
