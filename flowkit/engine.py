"""The scheduler: a ready-set loop over a validated graph.

A step is decided the moment its last upstream finishes (a counter per step, no tier barriers):
skipped by its trigger rule or fail-fast, restored from the journal (cached), skipped by its
``when=`` condition, or queued to run. Queued steps are submitted to a
``concurrent.futures.Executor`` while capacity allows; the loop blocks in ``wait(FIRST_COMPLETED)``
(with a timeout only when a retry or a deadline is due), journals every finished step and commits
the journal *before* any dependent is decided. Retries go back into the queue when their delay is
due, so a waiting retry never occupies a worker. Only this loop writes the journal and emits events.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from typing import Any

from . import capture, stopping
from .codec import (
    OutputMissingError,
    OutputUntrustedError,
    Serializer,
    decode,
    encode,
)
from .context import Context
from .dsl import Step
from .errors import StateError, StateWriteError, StepTimeoutError
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
from .executors import AsyncLoopExecutor, InlineExecutor, ainvoke, invoke, make_executor
from .fanout import FanOutError, gather_hash, instances
from .gcpause import freeze_more
from .graph import FlowGraph, Node, check_fit, machine_resources
from .interrupt import interruptible
from .isolate import DaemonThreadExecutor, IsolatedExecutor
from .keys import safe_name
from .ledger import Ledger
from .limits import Limits
from .result import ErrorInfo, RunResult, RunStatus, Status, StepResult, json_params
from .resume import CONDITION_FALSE, Decision, Inputs, KeyMaker, decide
from .rules import trigger_blocks
from .serializers import ByType, default_registry, reader_for
from .shell import ShellTimeoutError
from .store import LoadedState, RunStore, duration_of

__all__ = ["Engine", "EngineOptions", "StepTimeoutError"]

log = logging.getLogger("flowkit")


_JSON_SCALARS = frozenset({type(None), bool, int, float, str})

#: Steps kept in flight per worker on Dask: its scheduler queues them, which hides the round trip
#: to the cluster (a few ms) that would otherwise idle the workers between steps.
DASK_IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How to run (everything but the graph, the parameters and the state)."""

    executor: str = "inline"
    workers: int = 1
    address: str | None = None
    fail_fast: bool = True
    force: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    needed: frozenset[str] | None = None  # with `only`: those steps and their upstreams
    timeout: float | None = None
    grace: float = 10.0
    handle_signals: bool = False
    seed: int | None = None


class Engine:
    """Runs one flow run. Not reusable: build one per run."""

    def __init__(
        self,
        flow: str,
        graph: FlowGraph,
        run_id: str,
        params: Mapping[str, Any],
        store: RunStore,
        options: EngineOptions,
        callbacks: list[Callable[[Event], Any]],
        *,
        serializer: Serializer | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.clock = clock
        self.sleep = sleep or self._pause
        self.flow, self.graph, self.run_id = flow, graph, run_id
        self.params = dict(params)
        self.store, self.opts, self.callbacks = store, options, callbacks
        self.serializer: Serializer = serializer or default_registry()
        self.rng = random.Random(options.seed)
        self.keys = KeyMaker(self.params)
        self.nodes = dict(graph.nodes)  # fan-out instances are added at run time
        self.results: dict[str, StepResult] = {n: StepResult(n) for n in graph.order}
        self.remaining = {n: len(node.upstream) for n, node in self.nodes.items()}
        self.outputs: dict[str, Any] = {}
        self.hashes: dict[str, str] = {}
        self.step_keys: dict[str, str] = {}
        self.inputs_of: dict[str, Inputs] = {}  # turned into record fields only when journaled
        self.ctx_store: dict[str, Any] = {}
        self.decidable: deque[str] = deque()
        self.ready: deque[str] = deque()
        self.running: dict[Future[Any], str] = {}
        self.deadlines: list[tuple[float, int, str, Future[Any]]] = []
        self.retries: list[tuple[float, int, str]] = []
        self.seq = 0
        self.halted_by: str | None = None
        self.stop: RunStatus | None = None
        self.stop_at = 0.0
        self.abandoned = 0
        self.wakeup: Future[None] = Future()
        self.state = LoadedState()
        self._side: Executor | None = None
        self._isolated: IsolatedExecutor | None = None
        self._dask_resources = False
        self._async: AsyncLoopExecutor | None = None
        self.fanout: dict[str, list[str]] = {}
        self._failed_on: dict[str, str | None] = {}  # the worker of a step's last failed attempt
        self._logs = str(store.logs)
        self._stems: dict[str, str] = {}
        # on a cluster, Dask places steps by worker resources; locally, flowkit does
        local = options.executor != "dask"
        cpus, memory = machine_resources() if local else (float("inf"), 2**62)
        self.limits = Limits(graph.pools, cpus, memory)
        self.limited = bool(graph.pools) or (
            local and any(n.spec.cpus or n.spec.memory for n in graph.nodes.values())
        )
        self._when_params: dict[Any, frozenset[str] | None] = {}

    # --- the run --------------------------------------------------------------------------------

    def run(self, fresh: bool = False) -> RunResult:
        """Run (or resume) the run; ``fresh`` moves its old state aside first."""
        started = time.time()
        t0 = self.clock()
        with self.store.lock():
            if fresh:
                self.store.archive()
            else:
                self._set_aside_orphans()
            self.state = self.store.load()
            freeze_more()  # the loaded journal too (see Flow.run)
            result = self._execute(started, t0)
        emit(self.callbacks, RunFinished(self.run_id, result.status, time.time(), result))
        return result

    def _set_aside_orphans(self) -> None:
        """Outputs beside an empty or missing journal: move them aside rather than overwrite."""
        found = self.store.orphaned()
        if found:
            backup = self.store.dir.with_name(self.store.dir.name + ".previous")
            log.warning(
                "run folder %s has %s but its journal is %s: which steps finished is unknown, so "
                "the run starts over; the old files were moved to %s%s",
                self.store.dir,
                ", ".join(found),
                "empty" if self.store.exists() else "missing",
                backup,
                " (replacing what --fresh had left there)" if backup.exists() else "",
            )
            self.store.archive()

    def _execute(self, started: float, t0: float) -> RunResult:
        resumed = bool(self.state.steps)
        self.executor = make_executor(
            self.opts.executor,
            self.opts.workers,
            self.opts.address,
            signals_to_parent=self.opts.handle_signals,
            state_dir=str(self.store.root),
        )
        try:
            self._check_cluster_fit()  # before the journal is touched
            self.store.open()
        except BaseException:
            self.executor.shutdown(wait=False)
            raise
        self.ledger = Ledger(self.store, self.state)
        self.ledger.run_started(self.flow, self.run_id, self.params, started)
        self.store.commit()
        self.store.write_graph(self.graph.shape_json())
        emit(
            self.callbacks,
            RunStarted(self.run_id, self.flow, self.params, len(self.nodes), started, resumed),
        )
        self.capacity = {"inline": 1, "dask": DASK_IN_FLIGHT * self.opts.workers}.get(
            self.opts.executor, self.opts.workers
        )
        self.run_deadline = t0 + self.opts.timeout if self.opts.timeout else None
        try:
            with (
                interruptible(
                    self._interrupted,
                    self._stopping_message,
                    self.opts.handle_signals,
                    self.opts.grace,
                ),
                capture.session(),
            ):
                self._loop()
        except StateError:
            self.abandoned += 1  # the state cannot be written: do not wait for running steps
            raise
        finally:
            clean = not self.abandoned and self.stop is None
            self.executor.shutdown(wait=clean, cancel_futures=True)
            for side in (self._side, self._async):
                if side is not None:
                    side.shutdown(wait=False)
        result = self._result(started, self.clock() - t0)
        self.ledger.run_ended(result.status.value, time.time(), result.counts())
        self.store.write_snapshot(
            {
                "flow": self.flow,
                "run_id": self.run_id,
                "params": json_params(self.params),
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
        for name, count in self.remaining.items():
            if count == 0:
                self.decidable.append(name)
        while True:
            self._decide_all()
            self._fill()
            if not self.running:
                if self.retries and self.stop is None:
                    self.sleep(max(0.0, self.retries[0][0] - self.clock()))
                    self._due_retries()
                    continue
                break
            done = [f for f in self.running if f.done()]
            if not done:
                self.store.flush()  # before blocking: `status` sees what runs
                timeout = self._next_wakeup()
                waited, _ = wait(
                    [*self.running, self.wakeup], timeout=timeout, return_when=FIRST_COMPLETED
                )
                done = [f for f in waited if f in self.running]
            if done:
                self._finish_batch(done)
            self._expire()
            self._due_retries()

    def _stem(self, name: str) -> str:
        """``safe_name(name)``, computed once per step (file names of its log and outputs)."""
        stem = self._stems.get(name)
        if stem is None:
            stem = self._stems[name] = safe_name(name)
        return stem

    def _pause(self, seconds: float) -> None:
        """Wait for a retry's delay; cut short when the run is asked to stop (a signal)."""
        wait([self.wakeup], timeout=seconds)

    def _next_wakeup(self) -> float | None:
        times = []
        if self.retries:
            times.append(self.retries[0][0])
        if self.deadlines:
            times.append(self.deadlines[0][0])
        if self.run_deadline is not None and self.stop is None:
            times.append(self.run_deadline)
        if self.stop is not None:
            times.append(
                self.stop_at + (0.0 if self.stop is RunStatus.TIMED_OUT else self.opts.grace)
            )
        return max(0.0, min(times) - self.clock()) if times else None

    # --- deciding -------------------------------------------------------------------------------

    def _decide_all(self) -> None:
        while self.decidable and self.stop is None:
            self._decide(self.decidable.popleft())

    def _decide(self, name: str) -> None:
        node = self.nodes[name]
        spec = node.spec
        if name in self.fanout:  # every instance has finished
            return self._gather(node)
        if self.opts.needed is not None and name not in self.opts.needed:
            return self._skip(name, "not selected (--only)", journal=False)
        blocked = trigger_blocks(spec.trigger, node.upstream, self.results)
        # under fail-fast, a step below a failure is upstream_failed like any other; the rest
        # name the failure that stopped the run
        if (
            self.halted_by is not None
            and not spec.trigger.runs_after_failure
            and (blocked is None or blocked.status is not Status.UPSTREAM_FAILED)
        ):
            return self._skip(name, f"fail-fast: step {self.halted_by!r} failed")
        if blocked is not None:
            return self._skip(name, blocked.reason, status=blocked.status)
        if node.fans_out:
            return self._expand(node)
        inputs = self.keys.inputs(node, self.hashes, self.step_keys)
        self.step_keys[name] = inputs.key
        self.inputs_of[name] = inputs
        prev = self.state.steps.get(name)
        decision, reason = decide(spec, prev, inputs, forced=name in self.opts.force)
        if decision is Decision.CACHED and prev is not None:
            try:
                self._restore(name, prev)
                return
            except OutputMissingError as exc:
                decision, reason = Decision.RUN, f"{exc}"
                if isinstance(exc, OutputUntrustedError):
                    log.warning("step %r re-runs: %s", name, exc)
        if decision is Decision.SKIP:
            return self._skip(name, CONDITION_FALSE, journal=False)
        if self.opts.only is not None and name not in self.opts.only:
            return self._skip(name, f"not selected (--only); it would run: {reason}", journal=False)
        if spec.when is not None:
            try:
                go = bool(spec.when(**self._when_kwargs(node)))
            except Exception as exc:
                self._fail(name, ErrorInfo.of(exc), reason="when= condition raised")
                return
            if not go:
                return self._skip(name, CONDITION_FALSE, record=True)
        self.results[name].reason = reason
        self.ready.append(name)

    def _expand(self, node: Node) -> None:
        name = node.name
        mapped = self.outputs.get(node.spec.map_over) if node.spec.map_over else None
        try:
            made = instances(node, mapped)
        except FanOutError as exc:
            self._fail(name, ErrorInfo.of(exc))
            return
        self.fanout[name] = [i.name for i in made]
        self.remaining[name] = len(made)
        for inst in made:
            self.nodes[inst.name] = inst
            self.results[inst.name] = StepResult(inst.name)
            self.remaining[inst.name] = 0
            self.decidable.append(inst.name)
        if not made:
            self._gather(node)

    def _gather(self, node: Node) -> None:
        name, names, results = node.name, self.fanout[node.name], self.results
        failed = [n for n in names if results[n].status.failed]
        if failed:
            shown = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
            msg = f"{len(failed)} of {len(names)} instances failed: {shown}"
            self._fail(name, ErrorInfo("FanOutError", msg))
            return
        for n in names:
            r = results[n]
            if r.status is Status.UPSTREAM_FAILED or (
                r.status is Status.SKIPPED and r.reason != CONDITION_FALSE
            ):
                return self._skip(
                    name, f"instance {n!r} {r.status.value}: {r.reason}", status=r.status
                )
        done = [n for n in names if results[n].status.ok]  # `when=`-skipped ones are left out
        r = results[name]
        r.output = [self.outputs[n] for n in done]
        r.attempts = 1
        cached = all(results[n].status is Status.CACHED for n in done)
        r.status = Status.CACHED if cached else Status.SUCCEEDED
        r.reason = f"gathered {len(done)} instance(s)"
        h = gather_hash([self.hashes[n] for n in done])
        self.outputs[name], self.hashes[name] = r.output, h
        self.step_keys[name] = h
        self.ledger.gathered(name, h, names, r.reason)
        now = time.time()
        event: Event = (
            StepCached(self.run_id, name, now, 0.0, 1)
            if cached
            else StepSucceeded(self.run_id, name, 1, now, 0.0, r.reason)
        )
        emit(self.callbacks, event)
        self._release(name)

    def _restore(self, name: str, prev: Mapping[str, Any]) -> None:
        ser = self.nodes[name].spec.serializer or self.serializer
        ref = prev.get("ref")
        value = decode(prev, self.store.outputs, reader_for(ref, ser) if ref else ser)
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
        self.ledger.cached(name)
        if self.callbacks:
            emit(
                self.callbacks, StepCached(self.run_id, name, time.time(), r.duration_s, r.attempts)
            )
        self._release(name)

    def _ctx_update(self, writes: Mapping[str, Any]) -> None:
        if self.running:  # steps running now read the store: give them a stable view
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
            self.ledger.condition_false(name, reason, self.inputs_of[name])
        elif journal:
            self.ledger.skipped(name, reason, status)
        emit(self.callbacks, StepSkipped(self.run_id, name, time.time(), reason, status))
        self._release(name)

    def _release(self, name: str) -> None:
        remaining = self.remaining
        for succ in self.nodes[name].downstream:
            remaining[succ] -= 1
            if remaining[succ] == 0:
                self.decidable.append(succ)

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
                self.run_id,
                self.flow,
                node.name,
                attempt,
                self.params,
                self.ctx_store,
                self.results,
                node.upstream,
            )
        return kwargs

    def _fill(self) -> None:
        while self.ready and len(self.running) < self.capacity and self.stop is None:
            name = self.ready.popleft()
            node = self.nodes[name]
            if self.halted_by is not None and not node.spec.trigger.runs_after_failure:
                self._skip(name, f"fail-fast: step {self.halted_by!r} failed")
                self._decide_all()
                continue
            if self.limited and not self.limits.admit(name, node.spec):
                continue  # queued in its pool; handed back by _free
            self._submit(node)

    def _free(self, name: str) -> None:
        """An attempt of ``name`` ended: give back its pool slot and resources."""
        if self.limited:
            woken = self.limits.release(self.nodes[name].spec)
            self.ready.extendleft(reversed(woken))

    def _submit(self, node: Node) -> None:
        name, spec = node.name, node.spec
        r = self.results[name]
        r.attempts += 1
        r.status = Status.RUNNING
        kwargs = self._kwargs(node, r.attempts)
        executor, call = self._executor_for(spec)
        now = time.time()
        if r.started is None:
            r.started = now
        self.ledger.started(name, r.attempts, now)
        if self.callbacks:
            emit(self.callbacks, StepStarted(self.run_id, name, r.attempts, now, r.reason))
        log_path = f"{self._logs}{os.sep}{self._stem(name)}.log"
        if isinstance(executor, InlineExecutor):
            self.store.flush()  # the attempt runs right now: let `status` see it running
        args = (spec.fn, kwargs, kwargs.get("ctx"), log_path, r.attempts)
        if self._dask_resources and (spec.cpus or spec.memory) and executor is self.executor:
            need = {"CPU": spec.cpus or 0.0, "MEMORY": float(spec.memory or 0)}
            fut = self.executor.submit_with_resources(  # type: ignore[attr-defined]
                {k: v for k, v in need.items() if v}, call, *args
            )
        else:
            fut = executor.submit(call, *args)
        self.running[fut] = name
        if spec.timeout is not None:
            self.seq += 1
            heapq.heappush(self.deadlines, (self.clock() + spec.timeout, self.seq, name, fut))

    def _check_cluster_fit(self) -> None:
        """On Dask: map cpus/memory hints to worker resources, if the workers declare them."""
        self._dask_resources = False
        offered = getattr(self.executor, "worker_resources", None)
        hinted = [n.spec for n in self.nodes.values() if n.spec.cpus or n.spec.memory]
        if offered is None or not hinted:
            return
        workers = offered()
        if not any("CPU" in w or "MEMORY" in w for w in workers):
            log.warning(
                "the Dask workers declare no CPU/MEMORY resources; cpus= and memory= "
                "hints are ignored (start workers with --resources 'CPU=8,MEMORY=32e9')"
            )
            return
        check_fit(
            hinted,
            max(w.get("CPU", 0.0) for w in workers),
            max(w.get("MEMORY", 0.0) for w in workers),
            "the largest Dask worker",
            "Start workers with more: dask worker --resources 'CPU=8,MEMORY=32e9'.",
        )
        self._dask_resources = True

    def _executor_for(self, spec: Step) -> tuple[Executor, Callable[..., Any]]:
        """Where an attempt runs: the run's executor, or a side executor the step needs."""
        local = self.opts.executor in ("inline", "thread")
        if spec.isolate or (spec.timeout is not None and self.opts.executor == "process"):
            if self._isolated is None:
                self._isolated = IsolatedExecutor(str(self.store.root))
            return self._isolated, invoke
        if spec.is_async and local:  # async steps share one event loop; a timeout cancels them
            if self._async is None:
                self._async = AsyncLoopExecutor()
            return self._async, ainvoke
        if spec.timeout is not None and local:
            if self._side is None:
                self._side = DaemonThreadExecutor()
            return self._side, invoke
        return self.executor, invoke

    def _finish_batch(self, done: list[Future[Any]]) -> None:
        finished: list[tuple[str, Event]] = []
        for fut in done:
            name = self.running.pop(fut)
            self._free(name)
            exc = fut.exception()
            if exc is None:
                stored = self._succeeded(name, fut.result())
                if not isinstance(stored, BaseException):
                    finished.append((name, stored))
                    continue
                exc = stored  # the output could not be stored: the attempt failed
            event = self._attempt_failed(name, exc, isinstance(exc, ShellTimeoutError))
            if event is not None:
                finished.append((name, event))
        # durable before any dependent is decided (and so before any dependent can start)
        self.store.commit()
        for name, event in finished:
            emit(self.callbacks, event)
            self._release(name)

    def _succeeded(self, name: str, inv: tuple[Any, ...]) -> Event | BaseException:
        """Journal a finished attempt; returns its event, or the error if its output can't be
        stored."""
        value, writes, start, end, cpu, worker, peak_rss = inv
        stem = self._stem(name)
        configured = self.nodes[name].spec.serializer or self.serializer
        ser = configured
        if type(value) not in _JSON_SCALARS and isinstance(configured, ByType):
            ser = configured.for_value(value)  # (scalars go inline: no serializer to pick)
        try:
            try:
                enc = encode(value, self.store.outputs, stem, ser)
            except StateWriteError:
                raise
            except Exception:
                if not isinstance(configured, ByType) or ser is configured.fallback:
                    raise
                ser = configured.fallback  # a value its typed serializer cannot hold
                enc = encode(value, self.store.outputs, stem, ser)
            enc_ctx = (
                encode(writes, self.store.ctx_outputs, stem, self.serializer) if writes else None
            )
        except StateWriteError:
            raise  # a state problem, not the step's: the run stops (exit 2)
        except Exception as exc:
            return RuntimeError(
                f"step {name!r} returned a {type(value).__name__} that cannot be stored: "
                f"{type(ser).__name__} failed ({type(exc).__name__}: {exc}). Give the step a "
                "serializer that can store it (@step(serializer=...)), or return another value"
            )
        r = self.results[name]
        r.status, r.output, r.ended = Status.SUCCEEDED, value, end
        if r.attempts > 1 and r.started is not None and r.started < start:
            r.duration_s = end - r.started  # the span of all attempts (as for a failure)
        else:
            r.duration_s = end - start
        inputs = self.inputs_of[name]
        self.ledger.succeeded(r, inputs, start, end, cpu, worker, peak_rss, enc, enc_ctx)
        if writes:
            self._ctx_update(writes)
        self.outputs[name] = value
        self.hashes[name] = enc.hash
        return StepSucceeded(self.run_id, name, r.attempts, end, r.duration_s, r.reason)

    def _attempt_failed(
        self, name: str, exc: BaseException, timed_out: bool = False
    ) -> Event | None:
        r = self.results[name]
        err = ErrorInfo.of(exc)
        r.attempt_errors.append(err)
        self._failed_on[name] = getattr(exc, "flowkit_worker", None)
        delay = None
        if self.stop is None:
            delay = self.nodes[name].spec.retry.next_delay(r.attempts, exc, self.rng)
        if delay is not None:
            r.retry_delays.append(delay)
            self.ledger.retried(name, r.attempts, delay, err, timed_out, time.time())
            self.seq += 1
            heapq.heappush(self.retries, (self.clock() + delay, self.seq, name))
            emit(
                self.callbacks,
                StepRetrying(self.run_id, name, r.attempts, time.time(), err, delay, timed_out),
            )
            return None
        return self._fail(name, err, timed_out=timed_out, release=False)

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
        self.ledger.failed(r, self.inputs_of.get(name), self._failed_on.get(name), err)
        if self.opts.fail_fast and self.halted_by is None:
            self.halted_by = name
        log_path = f"{self._logs}{os.sep}{self._stem(name)}.log"
        event = StepFailed(
            self.run_id, name, r.attempts, r.ended, r.duration_s, err, timed_out, log_path
        )
        if release:
            self.store.commit()
            emit(self.callbacks, event)
            self._release(name)
        return event

    def _expire(self) -> None:
        if not self.deadlines and self.run_deadline is None and self.stop is None:
            return  # nothing can expire: skip the clock
        now = self.clock()
        expired: list[tuple[str, Event]] = []
        while self.deadlines and self.deadlines[0][0] <= now:
            _, _, name, fut = heapq.heappop(self.deadlines)
            if fut not in self.running:
                continue
            del self.running[fut]
            self._free(name)
            timeout = self.nodes[name].spec.timeout
            kill = getattr(fut, "kill", None)
            if kill is not None:
                kill()
                how = "its process group was killed"
            elif fut.cancel():  # not started yet, or an async step's task
                how = "attempt cancelled"
            else:
                self.abandoned += 1
                how = "attempt abandoned"
                log.warning(
                    "step %r timed out after %gs; its thread was abandoned (Python cannot "
                    "stop a running thread) and keeps running in the background",
                    name,
                    timeout,
                )
            exc = StepTimeoutError(f"step {name!r} timed out after {timeout:g}s ({how})")
            attempt = self.results[name].attempts
            log_path = f"{self._logs}{os.sep}{self._stem(name)}.log"
            capture.note(log_path, f"attempt {attempt} timed out after {timeout:g}s ({how})")
            event = self._attempt_failed(name, exc, timed_out=True)
            if event is not None:
                expired.append((name, event))
        if expired:
            self.store.commit()
            for name, event in expired:
                emit(self.callbacks, event)
                self._release(name)
        if self.run_deadline is not None and self.stop is None and now >= self.run_deadline:
            self.request_stop(RunStatus.TIMED_OUT)
        if self.stop is not None and self.running:
            grace = 0.0 if self.stop is RunStatus.TIMED_OUT else self.opts.grace
            if now >= self.stop_at + grace:
                for fut in list(self.running):
                    kill = getattr(fut, "kill", None)
                    if kill is not None:
                        kill()
                    else:
                        fut.cancel()
                        self.abandoned += 1
                if self.stop is RunStatus.INTERRUPTED and self.opts.handle_signals:
                    stopping.kill_all(final=False)  # shell steps, process workers
                self.running.clear()

    def _due_retries(self) -> None:
        if not self.retries:
            return
        now = self.clock()
        while self.retries and self.retries[0][0] <= now:
            _, _, name = heapq.heappop(self.retries)
            if self.stop is None:
                self.ready.appendleft(name)

    # --- stopping -------------------------------------------------------------------------------

    def request_stop(self, status: RunStatus) -> None:
        """Stop starting steps; running ones get a grace period (none on a run timeout)."""
        if self.stop is None:
            self.stop, self.stop_at = status, self.clock()
            if not self.wakeup.done():
                self.wakeup.set_result(None)

    def _interrupted(self, signal_name: str) -> None:
        self.request_stop(RunStatus.INTERRUPTED)

    def _stopping_message(self) -> str:
        return (
            f"no new steps start; running steps get {self.opts.grace:g}s to finish, then they "
            "are stopped. Press Ctrl-C again to stop at once."
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
