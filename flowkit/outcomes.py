"""What a run knows about its steps, and how each outcome is recorded.

:class:`Outcomes` holds every step's :class:`~flowkit.result.StepResult`, the outputs and their
content hashes, the cache keys, the ``ctx`` store, the fan-out instances; it builds the keyword
arguments of an attempt; and it records each outcome (restored, skipped, gathered, succeeded,
retried, failed) as a journal record through the :class:`~flowkit.ledger.Ledger` and as an event
for the listeners. It never decides and never schedules: the engine does, and says when to
commit the journal and release dependents.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from .codec import Encoded, Serializer, check_inline, decode, encode, stored_name
from .context import Context
from .cost import CostRates
from .decide import Gather, restored_reason
from .dispatch import AttemptOutcome
from .dsl import SHARED
from .errors import StateWriteError
from .events import (
    Event,
    StepCached,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepSucceeded,
    emit,
)
from .fanout import gather_hash, instances
from .graph import FlowGraph, Node
from .keys import safe_name
from .ledger import Ledger
from .result import ErrorInfo, RunResult, RunStatus, Status, StepResult
from .resume import Inputs, KeyMaker
from .serializers import ByType, reader_for
from .shared import SharedCache
from .store import RunStore, duration_of

__all__ = ["Outcomes", "shared_lookup"]

#: Types stored inline in the journal (as JSON): no serializer is chosen for them.
_JSON_SCALARS = frozenset({type(None), bool, int, float, str})
_CACHED = Status.CACHED
_FAILURES = frozenset({Status.FAILED, Status.TIMED_OUT})  # Status.failed, without its lookups


def shared_lookup(
    store: RunStore, graph: FlowGraph
) -> Callable[[Node, Inputs], Mapping[str, Any] | None] | None:
    """The shared cache lookup of a run (None when no step of ``graph`` shares its cache): a
    hit is the source's ``done`` record with ``from`` (its run and step) added."""
    if not any(n.spec.cache == SHARED for n in graph.nodes.values()):
        return None
    index = SharedCache(store.dir.parent)

    def lookup(node: Node, inputs: Inputs) -> Mapping[str, Any] | None:
        entry = index.lookup(inputs.key)
        if entry is None:
            return None
        return {**entry["rec"], "from": {"run": entry["run"], "step": entry["step"]}}

    return lookup


class Outcomes:
    """The steps of one run: their results, outputs and keys, and the recording of each outcome.

    Args:
        flow / run_id / params: the run.
        graph: its graph (fan-out instances are added as they are made).
        store: the run's state on disk (outputs are written there).
        serializer: stores outputs that are not inline JSON, for steps without their own
            ``serializer=`` (a :class:`~flowkit.serializers.ByType` picks one by the value's
            type, and falls back to its ``fallback`` for what the typed one cannot hold).
        callbacks: receive the events.
    """

    def __init__(
        self,
        flow: str,
        run_id: str,
        params: dict[str, Any],
        graph: FlowGraph,
        store: RunStore,
        serializer: Serializer,
        callbacks: list[Callable[[Event], Any]],
    ) -> None:
        self.flow, self.run_id, self.params = flow, run_id, params
        self.store, self.serializer, self.callbacks = store, serializer, callbacks
        self.keys = KeyMaker(params)
        self.nodes = dict(graph.nodes)  # fan-out instances are added at run time
        self.results: dict[str, StepResult] = {n: StepResult(n) for n in graph.order}
        self.outputs: dict[str, Any] = {}
        self.hashes: dict[str, str] = {}
        self.step_keys: dict[str, str] = {}
        self.inputs_of: dict[str, Inputs] = {}  # turned into record fields only when journaled
        self.ctx_store: dict[str, Any] = {}
        self.fanout: dict[str, list[str]] = {}
        self.ledger = Ledger(store)
        self._failed_on: dict[str, str | None] = {}  # the worker of a step's last failed attempt
        self.cost_rates: CostRates | None = None  # set by the engine: price each attempt
        self._logs = f"{store.logs}{os.sep}"
        self._when_params: dict[Any, frozenset[str] | None] = {}
        self.shared = shared_lookup(store, graph)  # None unless a step shares its cache
        self._index = SharedCache(store.dir.parent) if self.shared is not None else None

    def log_path(self, name: str) -> str:
        """Where the step's own output is captured."""
        return f"{self._logs}{safe_name(name)}.log"  # (safe_name is quick for a plain name)

    # --- what an attempt receives ---------------------------------------------------------------

    def inputs(self, node: Node) -> Inputs:
        """The step's cache inputs (kept until its outcome is journaled)."""
        inputs = self.keys.inputs(node, self.hashes, self.step_keys)
        self.step_keys[node.name] = inputs.key
        self.inputs_of[node.name] = inputs
        return inputs

    def kwargs(self, node: Node, attempt: int) -> dict[str, Any]:
        """The keyword arguments of an attempt: upstream outputs, parameters, ``ctx``."""
        outputs = self.outputs
        kwargs = {d: outputs.get(d) for d in node.data_deps}
        if node.run_params:
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

    def condition(self, node: Node) -> bool | BaseException:
        """What the step's ``when=`` returns for its inputs (or the error it raises)."""
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
        kwargs = self.kwargs(node, attempt=1)
        if wanted is not None:
            kwargs = {k: v for k, v in kwargs.items() if k in wanted}
        try:
            return bool(pred(**kwargs))
        except Exception as exc:
            return exc

    def _ctx_update(self, writes: Mapping[str, Any], busy: bool) -> None:
        if busy:  # steps running now read the store: give them a stable view
            self.ctx_store = {**self.ctx_store, **writes}
        else:
            self.ctx_store.update(writes)

    # --- recording outcomes ---------------------------------------------------------------------

    def restored(
        self, name: str, prev: Mapping[str, Any], busy: bool, shared: bool = False
    ) -> None:
        """Reuse a stored result (``shared``: found in the shared cache, so its record is
        journaled as this run's own). Raises OutputMissingError if its output cannot be read."""
        get = prev.get
        if "obj" not in prev and "ref" not in prev:
            # inline JSON: checked against its hash, no serializer involved
            value = get("out")
            check_inline(prev, value)
        else:
            store = self.store
            ref = stored_name(prev)  # a file is read by its suffix, whatever wrote it
            assert ref is not None
            ser = self.nodes[name].spec.serializer or self.serializer
            value = decode(prev, store.outputs, reader_for(ref, ser), store.objects)
        ctx = get("ctx")
        if ctx is not None:
            store = self.store
            writes = decode(ctx, store.ctx_outputs, self.serializer, store.objects)
            self._ctx_update(writes or {}, busy)
        r = self.results[name]
        r.status, r.output = _CACHED, value
        r.reason = restored_reason(prev) if "from" in prev else "unchanged"
        r.attempts = get("attempts", 1)  # an int: the journal's records are checked on load
        start, end = get("start"), get("end")
        if "dur" not in prev and start.__class__ is float and end.__class__ is float:
            r.duration_s = end - start  # the common case: one attempt (see duration_of)
        else:
            r.duration_s = duration_of(prev) or 0.0
        r.started, r.ended = start, end
        self.outputs[name] = value
        self.hashes[name] = get("hash", "-")  # a str when present (checked on load)
        self.inputs_of.pop(name, None)
        if shared:
            self.ledger.adopted(dict(prev))
        self.ledger.cached(name)
        if self.callbacks:
            emit(
                self.callbacks, StepCached(self.run_id, name, time.time(), r.duration_s, r.attempts)
            )

    def skipped(
        self,
        name: str,
        reason: str,
        *,
        journal: bool = True,
        remember: bool = False,
        status: Status = Status.SKIPPED,
    ) -> None:
        """Not run: ``skipped``, or ``upstream_failed`` when a failure upstream is the cause."""
        r = self.results[name]
        r.status, r.reason = status, reason
        if remember:  # a `when=` decision: remembered, so a resume decides the same way
            self.ledger.condition_false(name, reason, self.inputs_of.pop(name))
        else:
            self.inputs_of.pop(name, None)
            if journal:
                self.ledger.skipped(name, reason, status)
        if self.callbacks:
            emit(self.callbacks, StepSkipped(self.run_id, name, time.time(), reason, status))

    def expanded(self, node: Node) -> list[str]:
        """Make the instances of fan-out step ``node``; returns their names.

        Raises:
            FanOutError: what it maps over is not a list.
        """
        mapped = self.outputs.get(node.spec.map_over) if node.spec.map_over else None
        made = instances(node, mapped)
        names = self.fanout[node.name] = [i.name for i in made]
        for inst in made:
            self.nodes[inst.name] = inst
            self.results[inst.name] = StepResult(inst.name)
        return names

    def gathered(self, node: Node, verdict: Gather) -> None:
        """A fan-out step succeeds with its instances' outputs."""
        name = node.name
        r = self.results[name]
        r.output = [self.outputs[n] for n in verdict.instances]
        r.attempts = 1
        r.status = Status.CACHED if verdict.cached else Status.SUCCEEDED
        r.reason = f"gathered {len(verdict.instances)} instance(s)"
        h = gather_hash([self.hashes[n] for n in verdict.instances])
        self.outputs[name], self.hashes[name] = r.output, h
        self.step_keys[name] = h
        self.ledger.gathered(name, h, self.fanout.get(name) or verdict.instances, r.reason)
        if self.callbacks:
            now = time.time()
            event: Event = (
                StepCached(self.run_id, name, now, 0.0, 1)
                if verdict.cached
                else StepSucceeded(self.run_id, name, 1, now, 0.0, r.reason)
            )
            emit(self.callbacks, event)

    def started(self, name: str, now: float, journal: bool = True) -> StepResult:
        """An attempt of ``name`` starts at ``now``: journal it (unless not ``journal``);
        returns the step's result."""
        r = self.results[name]
        r.attempts += 1
        r.status = Status.RUNNING
        if r.started is None:
            r.started = now
        if journal:
            self.ledger.started(name, r.attempts, now)
        return r

    def succeeded(self, name: str, out: AttemptOutcome, busy: bool) -> BaseException | None:
        """Journal a successful attempt; returns None, or the error if its output can't be
        stored (then the attempt failed)."""
        objects = self.store.objects
        value = out.value
        configured = self.nodes[name].spec.serializer or self.serializer
        ser = configured
        if type(value) not in _JSON_SCALARS and isinstance(configured, ByType):
            ser = configured.for_value(value)  # (scalars go inline: no serializer to pick)
        try:
            try:
                enc = encode(value, objects, ser)
            except StateWriteError:
                raise
            except Exception:
                if not isinstance(configured, ByType) or ser is configured.fallback:
                    raise
                ser = configured.fallback  # a value its typed serializer cannot hold
                enc = encode(value, objects, ser)
            enc_ctx = encode(out.writes, objects, self.serializer) if out.writes else None
        except StateWriteError:
            raise  # a state problem, not the step's: the run stops (exit 2)
        except Exception as exc:
            return RuntimeError(
                f"step {name!r} returned a {type(value).__name__} that cannot be stored: "
                f"{type(ser).__name__} failed ({type(exc).__name__}: {exc}). Give the step a "
                "serializer that can store it (@step(serializer=...)), or return another value"
            )
        r = self.results[name]
        r.status, r.output, r.ended = Status.SUCCEEDED, value, out.end
        if r.attempts > 1 and r.started is not None and r.started < out.start:
            r.duration_s = out.end - r.started  # the span of all attempts (as for a failure)
        else:
            r.duration_s = out.end - out.start
        if self.cost_rates is not None:
            r.cost = self.cost_rates.of(out.cpu, out.peak_rss, out.end - out.start)
        inputs = self.inputs_of.pop(name)
        self.ledger.succeeded(
            r,
            inputs,
            out.start,
            out.end,
            out.cpu,
            out.worker or "",
            out.peak_rss,
            enc,
            enc_ctx,
        )
        if out.writes:
            self._ctx_update(out.writes, busy)
        self.outputs[name] = out.value
        self.hashes[name] = enc.hash
        if self._index is not None and self.nodes[name].spec.cache == SHARED:
            self._share(name, r, inputs, out, enc, enc_ctx)
        return None

    def _share(
        self,
        name: str,
        r: StepResult,
        inputs: Inputs,
        out: AttemptOutcome,
        enc: Encoded,
        enc_ctx: Encoded | None,
    ) -> None:
        """Offer a success to the flow's other runs (the shared cache index)."""
        assert self._index is not None
        rec: dict[str, Any] = {
            "step": name,
            "status": "succeeded",
            **inputs.record(),
            "attempts": r.attempts,
            "start": out.start,
            "end": out.end,
            **enc.fields(),
        }
        if enc_ctx is not None:
            rec["ctx"] = enc_ctx.fields()
        self._index.add(inputs.key, self.run_id, name, rec)

    def succeeded_event(self, name: str) -> Event:
        """The event of a step that just succeeded."""
        r = self.results[name]
        assert r.ended is not None
        return StepSucceeded(self.run_id, name, r.attempts, r.ended, r.duration_s, r.reason)

    def attempt_failed(self, name: str, out: AttemptOutcome) -> ErrorInfo:
        """Note a failed attempt (retried or not); returns its error."""
        assert out.error is not None
        err = ErrorInfo.of(out.error)
        self.results[name].attempt_errors.append(err)
        self._failed_on[name] = out.worker
        return err

    def retrying(self, name: str, err: ErrorInfo, delay: float, timed_out: bool) -> None:
        """The failed attempt is retried after ``delay`` seconds."""
        r = self.results[name]
        r.retry_delays.append(delay)
        self.ledger.retried(
            name, r.attempts, delay, err, timed_out, time.time(), self._failed_on.get(name)
        )
        if self.callbacks:
            emit(
                self.callbacks,
                StepRetrying(self.run_id, name, r.attempts, time.time(), err, delay, timed_out),
            )

    def failed(self, name: str, err: ErrorInfo, *, timed_out: bool, reason: str) -> Event:
        """The step failed (no retry left, or it could not start); returns its event."""
        r = self.results[name]
        r.status = Status.TIMED_OUT if timed_out else Status.FAILED
        r.error, r.ended = err, time.time()
        if reason:
            r.reason = reason
        if r.started is not None:
            r.duration_s = r.ended - r.started
        self.ledger.failed(r, self.inputs_of.pop(name, None), self._failed_on.pop(name, None), err)
        return StepFailed(
            self.run_id,
            name,
            r.attempts,
            r.ended,
            r.duration_s,
            err,
            timed_out,
            self.log_path(name),
        )

    # --- the result -----------------------------------------------------------------------------

    def result(self, stop: RunStatus | None, started: float, duration: float) -> RunResult:
        """The run's result (steps never reached are ``pending``, saying why)."""
        failed = False
        pending, running, failures = Status.PENDING, Status.RUNNING, _FAILURES
        for r in self.results.values():  # one pass: this visits every step
            st = r.status
            if st is pending or st is running:
                r.status = pending
                if stop is RunStatus.INTERRUPTED:
                    r.reason = "run interrupted"
                elif stop is RunStatus.TIMED_OUT:
                    r.reason = "run timed out"
            elif st in failures:
                failed = True
        if stop is not None:
            status = stop
        elif failed:
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
