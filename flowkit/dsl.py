"""The ``@step`` decorator and the frozen :class:`Step` spec it attaches to a function.

The decorator returns the user's function unchanged (still callable and picklable, which process
and Dask workers need) with a :class:`Step` under ``SPEC_ATTR``. Registries live on ``Flow``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .errors import InvalidStepOptionError
from .fnshape import is_async, location, parameters_from_code, parameters_from_signature
from .policy import Backoff, RetryPolicy, Trigger, backoff_of

__all__ = ["SPEC_ATTR", "Step", "spec_of", "step"]

SPEC_ATTR = "__flowkit_step__"

F = TypeVar("F", bound=Callable[..., Any])
Dep = str | Callable[..., Any]

#: ``cache=SHARED``: a step may reuse a result with the same cache key from any run of its flow.
SHARED = "shared"

#: Options a Flow's ``defaults=`` may set for its steps.
DEFAULTABLE = frozenset(
    {
        "retries",
        "backoff",
        "retry_on",
        "giveup_on",
        "retry_if",
        "timeout",
        "trigger",
        "cache",
        "cache_ttl",
    }
)


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    """Everything flowkit knows about one step, fixed when it is declared.

    ``params`` are the function's parameter names other than ``ctx``, in order; which of them are
    upstream steps and which are run parameters is decided by the flow, which knows all step names.
    """

    name: str
    fn: Callable[..., Any]
    depends_on: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    takes_ctx: bool = False
    is_async: bool = False
    retry: RetryPolicy = field(default=RetryPolicy())  # frozen: one shared default
    timeout: float | None = None
    trigger: Trigger = Trigger.ALL_SUCCESS
    when: Callable[..., Any] | None = None
    cache: bool | str = True  # True (this run's own results), "shared" (any run's), or False
    cache_ttl: float | None = None
    code_version: str | None = None
    matrix: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    map_over: str | None = None
    pool: str | None = None
    cpus: float | None = None
    memory: int | None = None
    isolate: bool = False
    serializer: Any = None  # a Serializer or a ByType registry; None: the flow's
    location: str = "<unknown>"
    explicit: frozenset[str] = frozenset()

    @classmethod
    def of(cls, fn: Callable[..., Any], **options: Any) -> Step:
        """Build and validate the spec of ``fn``; raises InvalidStepOptionError naming the step."""
        name = options.pop("name") if "name" in options else getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name or name == "<lambda>":
            raise InvalidStepOptionError(
                repr(fn),
                "name",
                name,
                "a non-empty string (lambdas and nameless callables need one)",
            )
        explicit = frozenset(options)
        unknown = explicit - _OPTIONS
        if unknown:
            bad = sorted(unknown)[0]
            raise InvalidStepOptionError(
                name, bad, options[bad], f"unknown option; valid options are {sorted(_OPTIONS)}"
            )
        read = parameters_from_code(fn)
        params, defaults, annotations, takes_ctx = read or parameters_from_signature(name, fn)
        spec = cls(
            name=name,
            fn=fn,
            depends_on=_dep_names(name, options.get("depends_on", ())),
            params=tuple(params),
            defaults=defaults,
            annotations=annotations,
            takes_ctx=takes_ctx,
            is_async=is_async(fn),
            location=location(fn),
            explicit=explicit,
        )
        return spec.with_options({k: v for k, v in options.items() if k != "depends_on"})

    def with_options(self, options: Mapping[str, Any]) -> Step:
        """A copy with policy options applied (validated): declarations and flow defaults."""
        name = self.name
        o = dict(options)
        changes: dict[str, Any] = {}
        if {"retries", "backoff", "retry_on", "giveup_on", "retry_if"} & o.keys():
            changes["retry"] = _retry_policy(name, self.retry, o)
        if "timeout" in o:
            changes["timeout"] = _positive(name, "timeout", o["timeout"], "seconds")
        if "trigger" in o:
            try:
                changes["trigger"] = Trigger(o["trigger"])
            except ValueError:
                raise InvalidStepOptionError(
                    name, "trigger", o["trigger"], f"one of {[t.value for t in Trigger]}"
                ) from None
        if "when" in o:
            if o["when"] is not None and not callable(o["when"]):
                raise InvalidStepOptionError(name, "when", o["when"], "a callable returning a bool")
            changes["when"] = o["when"]
        if "cache" in o:
            if not isinstance(o["cache"], bool) and o["cache"] != SHARED:
                raise InvalidStepOptionError(
                    name, "cache", o["cache"], f"True, False or {SHARED!r}"
                )
            changes["cache"] = o["cache"]
        if "cache_ttl" in o:
            changes["cache_ttl"] = _positive(name, "cache_ttl", o["cache_ttl"], "seconds")
        if "code_version" in o:
            cv = o["code_version"]
            if cv is not None and not isinstance(cv, str):
                raise InvalidStepOptionError(name, "code_version", cv, "a string, or None")
            changes["code_version"] = cv
        if "matrix" in o:
            changes["matrix"] = _matrix(name, o["matrix"], self.params)
        if "map_over" in o:
            m = o["map_over"]
            if m is not None and (not isinstance(m, str) or m not in self.params):
                raise InvalidStepOptionError(
                    name,
                    "map_over",
                    m,
                    f"the name of an upstream step that is also a parameter of {name}()",
                )
            changes["map_over"] = m
        if "pool" in o:
            if o["pool"] is not None and not isinstance(o["pool"], str):
                raise InvalidStepOptionError(name, "pool", o["pool"], "a pool name, or None")
            changes["pool"] = o["pool"]
        if "cpus" in o:
            changes["cpus"] = _positive(name, "cpus", o["cpus"], "CPUs")
        if "memory" in o:
            changes["memory"] = _memory(name, o["memory"])
        if "isolate" in o:
            if not isinstance(o["isolate"], bool):
                raise InvalidStepOptionError(name, "isolate", o["isolate"], "True or False")
            changes["isolate"] = o["isolate"]
        if "serializer" in o:
            ser = o["serializer"]
            if ser is not None and not all(hasattr(ser, a) for a in ("dumps", "loads", "suffix")):
                raise InvalidStepOptionError(
                    name,
                    "serializer",
                    ser,
                    "an object with dumps(value) -> bytes, loads(bytes) and a file suffix "
                    "(flowkit.PickleSerializer, flowkit.ParquetSerializer, a flowkit.ByType)",
                )
            changes["serializer"] = ser
        if changes.get("map_over", self.map_over) and changes.get("matrix", self.matrix):
            raise InvalidStepOptionError(
                name, "matrix", o.get("matrix"), "a step takes matrix= or map_over=, not both"
            )
        return dataclasses.replace(self, **changes) if changes else self

    def with_defaults(self, defaults: Mapping[str, Any]) -> Step:
        """Apply a flow's ``defaults=`` to the options this step did not set itself."""
        todo = {k: v for k, v in defaults.items() if k not in self.explicit}
        return self.with_options(todo) if todo else self


_OPTIONS = frozenset(
    {
        "depends_on",
        "code_version",
        "when",
        "matrix",
        "map_over",
        "pool",
        "cpus",
        "memory",
        "isolate",
        "serializer",
    }
    | DEFAULTABLE
)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _positive(name: str, option: str, value: Any, unit: str) -> float | None:
    """A number > 0 (NaN and booleans refused), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidStepOptionError(name, option, value, f"a number of {unit} > 0, or None")
    return float(value)


def _memory(name: str, value: Any) -> int | None:
    """``memory=`` as bytes: an int, or a string like "512MB", "4GB", "2GiB"."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(digits) :]
        try:
            amount = float(digits)
        except ValueError:
            amount = -1.0
        if amount > 0 and unit in _UNITS:
            return int(amount * _UNITS[unit])
    raise InvalidStepOptionError(name, "memory", value, 'bytes (int) or a size like "4GB"')


def _matrix(
    name: str, value: Any, params: tuple[str, ...]
) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not value:
        raise InvalidStepOptionError(name, "matrix", value, "a non-empty dict {param: values}")
    out = []
    for key, values in value.items():
        if key not in params:
            raise InvalidStepOptionError(
                name, "matrix", key, f"each matrix key must be a parameter of {name}()"
            )
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise InvalidStepOptionError(name, f"matrix[{key!r}]", values, "a list of values")
        vals = tuple(values)
        if not vals:
            raise InvalidStepOptionError(name, f"matrix[{key!r}]", values, "a non-empty list")
        out.append((str(key), vals))
    return tuple(out)


def _retry_policy(name: str, base: RetryPolicy, o: Mapping[str, Any]) -> RetryPolicy:
    retries = o.get("retries", base.retries)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidStepOptionError(name, "retries", retries, "an integer >= 0")
    try:
        backoff: Backoff = backoff_of(o["backoff"]) if "backoff" in o else base.backoff
    except ValueError as exc:
        raise InvalidStepOptionError(name, "backoff", o["backoff"], str(exc)) from None
    kinds: dict[str, tuple[type[BaseException], ...]] = {}
    for key in ("retry_on", "giveup_on"):
        value = o.get(key, getattr(base, key))
        as_tuple = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in as_tuple):
            raise InvalidStepOptionError(name, key, value, "an exception type or a tuple of them")
        kinds[key] = as_tuple
    retry_if = o.get("retry_if", base.retry_if)
    if retry_if is not None and not callable(retry_if):
        raise InvalidStepOptionError(name, "retry_if", retry_if, "a callable (exc) -> bool")
    return RetryPolicy(retries, backoff, kinds["retry_on"], kinds["giveup_on"], retry_if)


def _dep_names(step_name: str, deps: Iterable[Dep] | Dep) -> tuple[str, ...]:
    if isinstance(deps, str) or callable(deps):
        deps = [deps]
    names: list[str] = []
    for dep in deps:
        if isinstance(dep, str):
            names.append(dep)
        elif callable(dep):
            spec = getattr(dep, SPEC_ATTR, None)
            names.append(spec.name if spec is not None else getattr(dep, "__name__", repr(dep)))
        else:
            raise InvalidStepOptionError(step_name, "depends_on", dep, "step names or functions")
    return tuple(dict.fromkeys(names))


def spec_of(fn: Callable[..., Any]) -> Step | None:
    """The :class:`Step` attached to ``fn`` by ``@step``, or None."""
    spec = getattr(fn, SPEC_ATTR, None)
    return spec if isinstance(spec, Step) else None


@overload
def step(fn: F, /) -> F: ...


@overload
def step(
    *,
    name: str | None = ...,
    depends_on: Iterable[Dep] | Dep = ...,
    retries: int = ...,
    backoff: float | Backoff | str | None = ...,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
    giveup_on: type[BaseException] | tuple[type[BaseException], ...] = ...,
    retry_if: Callable[[BaseException], bool] | None = ...,
    timeout: float | None = ...,
    trigger: Trigger | str = ...,
    when: Callable[..., Any] | None = ...,
    cache: bool | str = ...,
    cache_ttl: float | None = ...,
    code_version: str | None = ...,
    matrix: Mapping[str, Iterable[Any]] | None = ...,
    map_over: str | None = ...,
    pool: str | None = ...,
    cpus: float | None = ...,
    memory: int | str | None = ...,
    isolate: bool = ...,
    serializer: Any = ...,
) -> Callable[[F], F]: ...


def step(fn: Any = None, /, **options: Any) -> Any:
    """Mark a function as a flowkit step; returns the function itself, with its spec attached.

    Args:
        name: the step's name (default: the function's name).
        depends_on: steps that must finish first, by name or function; order only, no value passed.
            A parameter named after a step is a dependency too, and receives that step's output.
        retries: attempts after the first when the step raises (>= 0).
        backoff: delay between attempts: seconds (fixed), ``"exponential"`` or a :class:`Backoff`.
        retry_on / giveup_on / retry_if: which exceptions are retried.
        timeout: seconds an attempt may take (> 0).
        trigger: a :class:`Trigger` rule (default ``all_success``).
        when: a predicate taking the step's own arguments; false skips the step.
        cache: False runs the step on every run, even when resuming; ``"shared"`` also reuses
            a result with the same cache key from any other run of the flow.
        cache_ttl: seconds after which a finished result is not reused.
        code_version: a string that replaces the source hash in the cache key.
        matrix: ``{param: values}``; one instance per combination (``name[param=value]``), each
            checkpointed and retried on its own; dependents receive the list of results.
        map_over: an upstream step whose output (a list) this step maps over at run time; the
            parameter of that name receives one item per instance.
        pool: a pool declared with ``Flow(pools={...})`` that caps concurrent steps.
        cpus / memory: resources the step needs; steps are not started beyond the machine's.
        isolate: run each attempt in a child process of its own, so a timeout can kill it (and
            every process it started).
        serializer: how this step's output is stored when it is not kept inline as JSON: a
            serializer (``dumps``/``loads``/``suffix``) or a :class:`flowkit.ByType` registry
            (default: the flow's; see :mod:`flowkit.serializers`).

    Raises:
        InvalidStepOptionError: an option has a value that cannot work (names the step).
    """

    def mark(f: F) -> F:
        setattr(f, SPEC_ATTR, Step.of(f, **options))
        return f

    if fn is not None:
        if options or not callable(fn):
            raise TypeError("use @step or @step(...) with keyword options")
        return mark(fn)
    return mark
