"""What a step function takes: its parameter names, defaults and annotations, whether it takes
``ctx``, whether it is a coroutine function, and where it is defined.

A plain function is read from its code object (cheap); anything unusual goes through
``inspect.signature``, which also words the errors.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

from .errors import InvalidStepOptionError

__all__ = [
    "CTX",
    "is_async",
    "location",
    "parameters_from_code",
    "parameters_from_signature",
]

#: The parameter name through which a step receives its run context.
CTX = "ctx"

_Parameters = tuple[tuple[str, ...], dict[str, Any], dict[str, Any], bool]

#: Code flags that send a function to inspect.signature: *args, **kwargs.
_VARARGS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS


def parameters_from_code(fn: Callable[..., Any]) -> _Parameters | None:
    """Parameter names, defaults and annotations of a plain function, read from its code object
    (``inspect.signature`` costs tens of microseconds a step). None for anything unusual
    (a wrapper, a ``__signature__``, *args/**kwargs, positional-only parameters): those go
    through :func:`parameters_from_signature`, which also words the errors."""
    if type(fn) is not types.FunctionType:
        return None
    fd = fn.__dict__
    if fd and ("__wrapped__" in fd or "__signature__" in fd):
        return None
    code = fn.__code__
    if code.co_flags & _VARARGS or code.co_posonlyargcount:
        return None
    npos = code.co_argcount
    names = code.co_varnames[: npos + code.co_kwonlyargcount]
    defaults: dict[str, Any] = {}
    if fn.__defaults__:
        positional = names[:npos]
        defaults.update(
            zip(positional[npos - len(fn.__defaults__) :], fn.__defaults__, strict=True)
        )
    if fn.__kwdefaults__:
        defaults.update(fn.__kwdefaults__)
    ann = fn.__annotations__
    annotations = {n: ann[n] for n in names if n in ann} if ann else {}
    if CTX in names:
        defaults.pop(CTX, None)
        annotations.pop(CTX, None)
        return tuple(n for n in names if n != CTX), defaults, annotations, True
    return tuple(names), defaults, annotations, False


def parameters_from_signature(name: str, fn: Callable[..., Any]) -> _Parameters:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise InvalidStepOptionError(
            name, "fn", fn, f"its signature cannot be read ({exc})"
        ) from None
    params: list[str] = []
    defaults: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    takes_ctx = False
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise InvalidStepOptionError(
                name,
                f"parameter {p.name}",
                str(p),
                "steps receive keyword arguments only; *args, **kwargs and positional-only "
                "parameters are not supported",
            )
        if p.name == CTX:
            takes_ctx = True
            continue
        params.append(p.name)
        if p.default is not p.empty:
            defaults[p.name] = p.default
        if p.annotation is not p.empty:
            annotations[p.name] = p.annotation
    return tuple(params), defaults, annotations, takes_ctx


def is_async(fn: Callable[..., Any]) -> bool:
    if type(fn) is types.FunctionType:
        return bool(fn.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(fn)


def location(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return "<unknown>"
    return f"{code.co_filename}:{code.co_firstlineno}"
