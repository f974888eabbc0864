"""Pieces of a flow's definition checked or built outside :class:`~flowkit.flow.Flow`: its
cron schedule, shell steps (their spec, and the timeout their command enforces), ``--param``
text converted by annotation, and whether the steps can run here as asked."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .dsl import DEFAULTABLE, SHARED, SPEC_ATTR, Step
from .errors import FlowDefinitionError, InvalidStepOptionError, UsageError
from .executors import check_picklable
from .graph import FlowGraph, check_fit, machine_resources
from .keys import canonical
from .params import ParamValueError, convert, describe
from .shell import ShellCommand

__all__ = [
    "check_cron",
    "check_runnable",
    "coerce_param",
    "flow_defaults",
    "id_params",
    "pool_sizes",
    "shell_command",
    "shell_timeout",
]

#: A parameter without a default (see ``id_params``).
_NO_DEFAULT = object()

_REQUIRED = object()


def shell_command(
    name: str,
    command: str | Sequence[str],
    depends_on: Iterable[str | Callable[..., Any]],
    params: Iterable[str] | Mapping[str, Any],
    cwd: str | None,
    env: Mapping[str, str] | None,
    timeout: float | None,
    where: str,
    options: Mapping[str, Any],
) -> ShellCommand:
    """The step :meth:`flowkit.Flow.shell` adds (its spec attached), defined at ``where``."""
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise InvalidStepOptionError(name, "timeout", timeout, "a number of seconds > 0")
    cmd = ShellCommand(command, cwd=cwd, env=env, timeout=timeout)
    given = dict(params) if isinstance(params, Mapping) else dict.fromkeys(params, _REQUIRED)
    sig = inspect.Signature(
        [
            inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, default=d)
            if d is not _REQUIRED
            else inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY)
            for p, d in given.items()
        ]
    )
    cmd.__signature__ = sig  # type: ignore[attr-defined]
    version = repr((cmd.text, cwd, sorted((env or {}).items())))
    spec = Step.of(cmd, name=name, depends_on=depends_on, code_version=version, **options)
    setattr(cmd, SPEC_ATTR, dataclasses.replace(spec, location=where))
    return cmd


def check_runnable(g: FlowGraph, kind: str) -> None:
    """Raise if a step needs more than this machine has (unless on a cluster), or cannot be sent
    to the other processes ``kind`` runs steps in."""
    if kind != "dask":  # a cluster's workers are checked when it is reached
        check_fit(
            (n.spec for n in g.nodes.values()),
            *machine_resources(),
            "this machine",
            "Lower it, or run on a cluster (--executor dask).",
        )
    if kind in ("process", "dask"):  # steps go to other processes: can they?
        check_picklable(((n, node.spec.fn) for n, node in g.nodes.items()), kind)


def coerce_param(g: FlowGraph, key: str, value: str) -> Any:
    """A ``--param`` string converted to the annotated type of the steps that take ``key``.

    Raises:
        UsageError: it does not convert.
    """
    for node in g.nodes.values():
        if key not in node.run_params:
            continue
        ann = _annotation(node.spec, key)
        try:
            return convert(value, ann)
        except ParamValueError as exc:
            raise UsageError(
                f"parameter {key}={value!r}: step {node.name!r} declares "
                f"{key}: {describe(ann)}, and {exc}"
            ) from None
    return value


def _annotation(spec: Step, key: str) -> Any:
    """The annotation of parameter ``key`` of ``spec``'s function, resolved if it is a string
    (``from __future__ import annotations``); the string itself if it cannot be resolved."""
    ann = spec.annotations.get(key)
    if isinstance(ann, str):
        # a name the module imports only under TYPE_CHECKING, say, leaves the string
        with contextlib.suppress(Exception):
            ann = typing.get_type_hints(spec.fn).get(key, ann)
    return ann


def shell_timeout(spec: Step) -> Step:
    """A shell step's timeout, wherever it was set, is enforced by its command.

    The command kills its whole process group when it expires, as ``shell(timeout=)`` says; a
    timeout from ``defaults=`` must mean the same (not an abandoned attempt whose command runs
    on), and the command's own timeout wins over a default.
    """
    cmd = spec.fn
    if not isinstance(cmd, ShellCommand) or spec.timeout is None:
        return spec
    if cmd.timeout is None:
        cmd = copy.copy(cmd)
        cmd.timeout = spec.timeout
    return dataclasses.replace(spec, fn=cmd, timeout=None)


def check_cron(flow: str, cron: str | None) -> str | None:
    """``schedule=``: a five-field cron expression (checked now when croniter is installed)."""
    if cron is None:
        return None
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise FlowDefinitionError(
            f"flow {flow!r}: schedule={cron!r} is not a cron expression; use five fields: "
            "minute hour day-of-month month day-of-week, e.g. '0 2 * * *' (02:00 daily)"
        )
    try:
        from croniter import croniter
    except ImportError:  # checked when scheduled (flowkit[cron])
        return cron
    if not croniter.is_valid(cron):
        raise FlowDefinitionError(
            f"flow {flow!r}: schedule={cron!r} is not a valid cron expression, e.g. '0 2 * * *'"
        )
    return cron


def id_params(g: FlowGraph, given: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that make a run id: those given, less those equal to the default of every
    step that takes them (so ``--param n=22``, 22 being the default, is the default run)."""
    out = {}
    for key, value in given.items():
        takers = [n for n in g.nodes.values() if key in n.run_params]
        defaults = [n.spec.defaults.get(key, _NO_DEFAULT) for n in takers]
        if not defaults or not all(
            d is not _NO_DEFAULT and canonical({"v": d}) == canonical({"v": value})
            for d in defaults
        ):
            out[key] = value
    return out


def flow_defaults(
    name: str, defaults: Mapping[str, Any] | None, cache: bool | str | None
) -> dict[str, Any]:
    """``Flow(defaults=..., cache=...)`` checked: options that can be defaulted, and a ``cache``
    that is True, False or ``"shared"`` (``cache=`` is ``defaults={"cache": ...}``)."""
    out = dict(defaults or {})
    if cache is not None:
        if not isinstance(cache, bool) and cache != SHARED:
            raise FlowDefinitionError(
                f"flow {name!r}: cache={cache!r}; use True, False or {SHARED!r}"
            )
        out.setdefault("cache", cache)
    bad_cache = out.get("cache", True)
    if not isinstance(bad_cache, bool) and bad_cache != SHARED:
        raise FlowDefinitionError(
            f"flow {name!r}: defaults= sets cache={bad_cache!r}; use True, False or {SHARED!r}"
        )
    bad = sorted(set(out) - DEFAULTABLE)
    if bad:
        raise FlowDefinitionError(
            f"flow {name!r}: defaults= cannot set {bad[0]!r}; it accepts {sorted(DEFAULTABLE)}"
        )
    return out


def pool_sizes(name: str, pools: Mapping[str, int] | None) -> dict[str, int]:
    """``Flow(pools=...)`` checked: each pool's size is an int >= 1."""
    out = dict(pools or {})
    for pool, size in out.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise FlowDefinitionError(
                f"flow {name!r}: pool {pool!r} has size {size!r}; a pool needs an int >= 1"
            )
    return out
