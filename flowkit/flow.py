"""``Flow``: a named registry of steps, and the facades to validate, plan and run it."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .codec import Serializer, check_side_files
from .cost import CostRates
from .definition import (
    check_cron,
    check_runnable,
    coerce_param,
    flow_defaults,
    id_params,
    pool_sizes,
    shell_command,
    shell_timeout,
)
from .dsl import Step, spec_of, step
from .engine import Engine
from .errors import (
    DuplicateStepError,
    FlowDefinitionError,
    FlowProblemsError,
    UnknownDependencyError,
    UsageError,
)
from .events import Event, ListenerLike, as_callbacks
from .gcpause import gc_frozen_run
from .graph import FlowGraph
from .keys import load_code_cache, run_id_for, save_code_cache
from .listening import notifiers_given, split_notifiers, tracer_of
from .options import UNSET, RunOptions, Selection
from .outcomes import shared_lookup
from .planner import check_only, plan
from .result import RunResult
from .resume import KeyMaker, Plan, selection_of
from .shell import ShellCommand
from .store import LoadedState, RunStore, default_state_dir
from .streaming import stream_run

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = ["Flow", "check_cron"]

F = TypeVar("F", bound=Callable[..., Any])
PathLike = str | os.PathLike[str]

_REQUIRED = object()

#: Source hashes of step functions, shared by the flows of one state dir (a cache: see keys.py).
CODE_CACHE = "code-hashes.json"


class Flow:
    """A named set of steps.

    Register steps with ``@flow.step(...)`` (or ``flow.step(name=..., depends_on=...)(fn)`` to
    build flows programmatically), or mark functions with ``@step`` and pass them as
    ``Flow(name, steps=[...])``. ``defaults=`` sets options (``retries``, ``backoff``, ``timeout``,
    ``trigger``, ``cache``, ...) for every step that does not set them itself. ``pools=`` declares
    concurrency pools: ``Flow("etl", pools={"db": 2})`` lets at most 2 ``@step(pool="db")`` steps
    run at once. ``schedule=`` is the flow's cron expression (``"0 2 * * *"``), used by
    ``flowkit schedule TARGET`` and :class:`flowkit.schedule.Schedule` when no ``--cron`` is given.
    ``cache="shared"`` lets every step that does not set ``cache=`` itself reuse a result with the
    same cache key from any run of the flow (``defaults={"cache": "shared"}``).

    Raises:
        DuplicateStepError: two steps share a name.
        FlowDefinitionError: a function in ``steps=`` is not marked with ``@step``, or a
            ``defaults=`` key is not an option that can be defaulted, or ``schedule=`` is not a
            cron expression.
    """

    def __init__(
        self,
        name: str,
        steps: Iterable[Callable[..., Any]] = (),
        *,
        defaults: Mapping[str, Any] | None = None,
        pools: Mapping[str, int] | None = None,
        serializer: Serializer | None = None,
        notify: Iterable[Notifier] | Notifier = (),
        schedule: str | None = None,
        cache: bool | str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise FlowDefinitionError(f"a flow needs a non-empty name, got {name!r}")
        self.name = name
        self.schedule = check_cron(name, schedule)
        self.defaults = flow_defaults(name, defaults, cache)
        self.pools = pool_sizes(name, pools)
        self.serializer = serializer
        self.notify = notifiers_given(notify, f"flow {name!r}: notify=")
        self._steps: dict[str, Step] = {}
        self._graph: FlowGraph | None = None
        for fn in steps:
            self.add(fn)

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, {len(self._steps)} steps)"

    # --- building -------------------------------------------------------------------------------

    def add(self, fn: F) -> F:
        """Add a function marked with ``@step`` to this flow; returns it."""
        spec = spec_of(fn)
        if spec is None:
            raise FlowDefinitionError(
                f"flow {self.name!r}: {getattr(fn, '__name__', fn)!r} is not a step; "
                "decorate it with @step or register it with @flow.step()"
            )
        if self.defaults:
            spec = spec.with_defaults(self.defaults)
        spec = shell_timeout(spec)
        other = self._steps.get(spec.name)
        if other is not None:
            raise DuplicateStepError(self.name, spec.name, other.location, spec.location)
        self._steps[spec.name] = spec
        self._graph = None
        return fn

    @overload
    def step(self, fn: F, /) -> F: ...

    @overload
    def step(self, /, **options: Any) -> Callable[[F], F]: ...

    def step(self, fn: Any = None, /, **options: Any) -> Any:
        """Like :func:`flowkit.step`, and registers the function in this flow."""
        if fn is not None:
            return self.add(step(fn))

        def register(f: F) -> F:
            marked: F = step(**options)(f)
            return self.add(marked)

        return register

    def shell(
        self,
        name: str,
        command: str | Sequence[str],
        *,
        depends_on: Iterable[str | Callable[..., Any]] = (),
        params: Iterable[str] | Mapping[str, Any] = (),
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> ShellCommand:
        """Add a step that runs ``command`` (a shell string, or an argv list without a shell).

        The step's output is the command's stdout+stderr text; a non-zero exit fails it. Run
        parameters listed in ``params`` reach the command as ``FLOWKIT_PARAM_<NAME>`` environment
        variables (a mapping gives their defaults). ``timeout`` kills the command's whole
        process group (SIGTERM, then SIGKILL).
        Other options (``retries``, ``trigger``, ...) are those of :func:`flowkit.step`; the
        cache key covers the command, ``cwd`` and ``env``.
        """
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        where = f"{caller.f_code.co_filename}:{caller.f_lineno}" if caller else "<unknown>"
        cmd = shell_command(name, command, depends_on, params, cwd, env, timeout, where, options)
        self.add(cmd)
        return cmd

    @property
    def steps(self) -> Mapping[str, Step]:
        """The steps by name, in registration order."""
        return dict(self._steps)

    # --- inspecting -----------------------------------------------------------------------------

    def graph(self) -> FlowGraph:
        """The validated dependency graph (raises FlowDefinitionError for a bad flow)."""
        if self._graph is None:
            self._graph = FlowGraph(self.name, self._steps, self.pools)
        return self._graph

    def generations(self) -> list[list[str]]:
        """The topological tiers: each tier's steps depend only on earlier tiers (sorted names)."""
        return [list(t) for t in self.graph().tiers]

    def resolve_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Validate run parameters and convert strings (from the CLI) to annotated types.

        Raises:
            UnknownParameterError / UnboundParameterError: see :meth:`FlowGraph.check_params`.
            FlowProblemsError: several problems (unknown dependencies, undeclared pools and
                bad parameters), all listed.
            UsageError: a string that does not convert to the parameter's annotated type.
        """
        given = dict(params or {})
        try:
            g = self.graph()
        except (UnknownDependencyError, FlowProblemsError) as exc:
            # report the bad parameters too, not just the first thing wrong
            lenient = FlowGraph(self.name, self._steps, self.pools, lenient=True)
            problems = [*lenient.problems, *lenient.param_problems(given)]
            if len(problems) > len(getattr(exc, "problems", [exc])):
                raise FlowProblemsError(self.name, problems) from None
            raise
        g.check_params(given)
        for key, value in given.items():
            if isinstance(value, str):
                given[key] = coerce_param(g, key, value)
        return given

    def run_id(self, params: Mapping[str, Any] | None = None) -> str:
        """The run id of this flow with these parameters (what resumes across invocations)."""
        given = self.resolve_params(params)
        return run_id_for(self.name, id_params(self.graph(), given))

    def store(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        state_dir: PathLike | None = None,
        run_id: str | None = None,
        durability: str = "flush",
    ) -> RunStore:
        """The state files of one run of this flow."""
        if durability not in ("flush", "fsync"):
            raise UsageError(f"durability must be 'flush' or 'fsync', got {durability!r}")
        rid = run_id or self.run_id(params)
        return RunStore(default_state_dir(state_dir), self.name, rid, fsync=durability == "fsync")

    def load_state(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        state_dir: PathLike | None = None,
        run_id: str | None = None,
    ) -> LoadedState:
        """What the run's journal holds (empty if the run never started)."""
        s = self.store(params, state_dir=state_dir, run_id=run_id)
        return s.load() if s.exists() else LoadedState()

    def plan(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        state_dir: PathLike | None = None,
        run_id: str | None = None,
        fresh: bool = False,
        options: RunOptions | None = None,
        rerun: Iterable[str] = UNSET,
        only: Iterable[str] = UNSET,
    ) -> Plan:
        """What :meth:`run` would do with these arguments. Executes nothing, writes nothing.

        ``options`` (with ``rerun`` / ``only`` laid over it) are those the run would get; each
        step's verdict comes from the decision function the run itself uses.
        """
        opts = RunOptions.of(options, rerun=rerun, only=only)
        given = self.resolve_params(params)
        g = self.graph()
        store = self.store(given, state_dir=state_dir, run_id=run_id)
        stored = {} if fresh or not store.exists() else store.load().steps
        load_code_cache(store.root / CODE_CACHE)
        return plan(
            g,
            stored,
            KeyMaker(given),
            self._selection(g, opts, store),
            lambda record: check_side_files(record, store.outputs, store.objects),
            shared_lookup(store, g),
        )

    # --- running --------------------------------------------------------------------------------

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        state_dir: PathLike | None = None,
        run_id: str | None = None,
        fresh: bool = False,
        options: RunOptions | None = None,
        on_event: Callable[[Event], Any] | None = None,
        listeners: Iterable[ListenerLike] = (),
        notify: Iterable[Notifier] | Notifier = (),
        workers: int = UNSET,
        executor: str | None = UNSET,
        address: str | None = UNSET,
        cluster_wait: float = UNSET,
        cost_rates: CostRates | str | None = UNSET,
        fail_fast: bool = UNSET,
        rerun: Iterable[str] = UNSET,
        only: Iterable[str] = UNSET,
        timeout: float | None = UNSET,
        durability: str = UNSET,
        seed: int | None = UNSET,
        handle_signals: bool = UNSET,
        grace: float = UNSET,
    ) -> RunResult:
        """Run the flow, resuming the run with the same id if it has state; return the result.

        How to run is a :class:`RunOptions` (``options=``); each of its fields can also be given
        as a keyword here, which overrides ``options``.

        Args:
            params: run parameters (strings are converted to the parameters' annotated types).
            state_dir: where state lives (default ``$FLOWKIT_STATE_DIR`` or ``./.flowkit``).
            run_id: name the run explicitly (default: derived from the flow name and params).
            fresh: move the run's old state aside (``<run>.previous``) and start over.
            options: how to run (see :class:`RunOptions`).
            on_event / listeners: receive every :mod:`flowkit.events` event.
            workers: how many steps may run at once (1: sequential, inline).
            executor: ``inline``, ``thread``, ``process`` or ``dask`` (default: inline for one
                worker, threads otherwise).
            fail_fast: stop starting steps after a failure (False: run all that can run).
            rerun: steps (names or globs) to run again with everything downstream of them.
            only: run just these steps; their upstreams must have stored results.
            timeout: seconds for the whole run; on expiry it stops and can be resumed later.
            durability: ``flush`` (survives a process crash) or ``fsync`` (survives power loss).
            seed: seeds the retry jitter.
            handle_signals: turn SIGINT/SIGTERM into a clean interruption (the CLI does this).
            grace: seconds running steps get to finish after an interruption.
            notify: notifiers (:mod:`flowkit.notify`) sent when the run ends, with the flow's
                own; notifiers given in ``listeners`` are sent the same way. They are sent
                together, each within its deadline; ``result.notifications`` and the run's
                report say how each went. A failed delivery never changes the result.

        Raises:
            FlowDefinitionError, UsageError, StateError: before anything runs or is written.
            StateWriteError: the disk refused a write of the run's state (full, read-only); at any
                point of the run, which stops there and can be resumed once the cause is fixed.
        """
        listeners, notifiers = split_notifiers(
            listeners, [*self.notify, *notifiers_given(notify, "notify=")]
        )
        opts = RunOptions.of(
            options,
            workers=workers,
            executor=executor,
            address=address,
            cluster_wait=cluster_wait,
            cost_rates=cost_rates,
            fail_fast=fail_fast,
            rerun=rerun,
            only=only,
            timeout=timeout,
            durability=durability,
            seed=seed,
            handle_signals=handle_signals,
            grace=grace,
        )
        given = self.resolve_params(params)
        g = self.graph()
        rid = run_id or run_id_for(self.name, id_params(g, given))
        store = self.store(given, state_dir=state_dir, run_id=rid, durability=opts.durability)
        selection = self._selection(g, opts, store)
        if selection.only is not None:
            self._check_only(g, set(selection.only), given, state_dir, rid, fresh)
        check_runnable(g, opts.kind)
        callbacks = as_callbacks([*listeners, *([on_event] if on_event else [])])
        # Objects that exist when a run starts (the graph, then the run's bookkeeping and loaded
        # journal) are not garbage and will not become garbage during it: frozen, the cyclic GC
        # stops rescanning them, which otherwise makes large runs superlinear. Both GC settings
        # are restored when the run ends.
        code_cache = store.root / CODE_CACHE
        load_code_cache(code_cache)
        try:
            with gc_frozen_run():
                engine = Engine(
                    self.name,
                    g,
                    rid,
                    given,
                    store,
                    opts,
                    callbacks,
                    selection=selection,
                    serializer=self.serializer,
                    tracer=tracer_of(listeners),
                )
                result = engine.run(fresh=fresh)
        finally:
            save_code_cache(code_cache)
        if notifiers:
            from .notify import alert

            alert(notifiers, result, store)
        return result

    @staticmethod
    def _selection(g: FlowGraph, opts: RunOptions, store: RunStore) -> Selection:
        """``rerun`` / ``only`` resolved to step names; ``--rerun`` may also name a fan-out
        instance the run's journal knows (``fetch[north]``)."""
        made: list[str] = []
        if any(p not in g.nodes and "[" in p for p in opts.rerun) and store.exists():
            made = [n for n in store.load().steps if "[" in n]
        return selection_of(g, opts.rerun, opts.only, made)

    def _check_only(
        self,
        g: FlowGraph,
        chosen: set[str],
        given: dict[str, Any],
        state_dir: PathLike | None,
        rid: str,
        fresh: bool,
    ) -> None:
        check_only(self.plan(given, state_dir=state_dir, run_id=rid, fresh=fresh), g, chosen, rid)

    def stream(
        self, params: Mapping[str, Any] | None = None, **run_kwargs: Any
    ) -> Generator[Event, None, None]:
        """Run the flow in a background thread and yield its events as they happen.

        ``run_kwargs`` are those of :meth:`run` (an ``on_event`` given is called too). The first
        event is ``RunStarted``, the last ``RunFinished`` (its ``result`` is the run's result);
        iteration ends after it. An exception raised by :meth:`run` (an invalid flow or state,
        found before anything runs) is raised here, in the consumer. Nothing starts until the
        first ``next()``.

        If you stop iterating early (``break``, or the generator is closed), the run is not
        cancelled: it keeps going to completion in its (non-daemon) background thread, and the
        interpreter waits for it before exiting. Signals are not handled in that thread.
        """
        return stream_run(self.run, self.name, params, run_kwargs)
