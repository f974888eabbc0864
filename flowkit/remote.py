"""Exceptions that cross a process boundary (process pool, isolated attempts, Dask).

A step's exception travels back to the engine pickled. Some cannot be pickled (urllib's
``HTTPError`` holds an open response), or do not unpickle (an ``__init__`` whose arguments are
not its ``args``). :func:`portable` replaces such an exception, in the worker, by a stand-in that
pickles and that keeps what matters to the engine and to the user:

- its type, when the class can be imported by the engine: the stand-in is an instance of a
  subclass of the original class, so ``retry_on=(HTTPError,)`` and ``giveup_on`` match it;
- its qualified name, message, ``args`` and the attributes that pickle (``code``, ``url``, ...);
- the text of its traceback in the worker.

Every stand-in is also an :class:`ExceptionStandIn`, whose ``pickle_error`` says why it was needed
("exception not picklable: ...").
"""

from __future__ import annotations

import importlib
import pickle
import traceback
from typing import Any

__all__ = ["ExceptionStandIn", "portable"]

_CACHE: dict[type[BaseException], type[BaseException]] = {}
_GENERIC: dict[tuple[str, str], type[BaseException]] = {}


class ExceptionStandIn(Exception):
    """Stands in for a step's exception that could not be pickled back from its worker.

    Attributes:
        original_type: the original exception's ``module.QualifiedName``.
        original_message: ``str()`` of the original exception.
        original_traceback: the original traceback, formatted in the worker.
        pickle_error: why a stand-in was needed (``exception not picklable: ...``).
    """

    original_type: str
    original_message: str
    original_traceback: str
    pickle_error: str

    def __str__(self) -> str:
        return self.original_message

    def __repr__(self) -> str:
        return f"{self.original_type}({self.original_message!r}) [{self.pickle_error}]"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, _fields(self))


def portable(exc: BaseException) -> BaseException:
    """``exc`` itself if it survives a pickle round trip, else a stand-in that does.

    Called in the worker, on the failure path only: a step that succeeds pays nothing.
    """
    try:
        pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
        return exc
    except Exception as why:
        problem = f"{type(why).__name__}: {why}"
    cls = type(exc)
    attrs: dict[str, Any] = {}
    for key, value in vars(exc).items():
        try:
            pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:
            continue
        attrs[key] = value
    args: tuple[Any, ...] = ()
    try:
        pickle.loads(pickle.dumps(exc.args, protocol=pickle.HIGHEST_PROTOCOL))
        args = tuple(exc.args)
    except Exception:
        args = tuple(repr(a) for a in exc.args)
    return _rebuild(
        cls.__module__,
        cls.__qualname__,
        args,
        _safe_str(exc),
        "".join(traceback.format_exception(cls, exc, exc.__traceback__)),
        f"exception not picklable: {problem}",
        attrs,
    )


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return repr(exc.args)


def _fields(s: ExceptionStandIn) -> tuple[Any, ...]:
    module, _, qualname = s.original_type.rpartition(".")
    # the class's own __dict__ holds the copied attributes; our four fields are passed apart
    attrs = {
        k: v
        for k, v in vars(s).items()
        if k not in ("original_type", "original_message", "original_traceback", "pickle_error")
    }
    qualname = getattr(type(s), "_standin_qualname", qualname)
    module = getattr(type(s), "_standin_module", module)
    return (
        module,
        qualname,
        tuple(s.args),
        s.original_message,
        s.original_traceback,
        s.pickle_error,
        attrs,
    )


def _rebuild(
    module: str,
    qualname: str,
    args: tuple[Any, ...],
    message: str,
    original_traceback: str,
    pickle_error: str,
    attrs: dict[str, Any],
) -> BaseException:
    """A stand-in for ``module.qualname``: of that type when it imports, else generic."""
    cls = _standin_class(_find(module, qualname), module, qualname)
    # __new__ sets args without running the original __init__ (which may need arguments that
    # are gone, such as an open file)
    try:
        inst = cls.__new__(cls, *args)
    except Exception:
        cls = _standin_class(None, module, qualname)
        inst = cls.__new__(cls, *args)
    inst.__dict__.update(attrs)
    inst.__dict__.update(
        original_type=f"{module}.{qualname}" if module else qualname,
        original_message=message,
        original_traceback=original_traceback,
        pickle_error=pickle_error,
    )
    return inst


def _find(module: str, qualname: str) -> type[BaseException] | None:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


def _standin_class(
    original: type[BaseException] | None, module: str, qualname: str
) -> type[BaseException]:
    if original is None or issubclass(original, ExceptionStandIn):
        key = (module, qualname)
        if key in _GENERIC:
            return _GENERIC[key]
        generic = _GENERIC[key] = type(
            qualname.rpartition(".")[2] or "ExceptionStandIn",
            (ExceptionStandIn,),
            {"_standin_module": module, "_standin_qualname": qualname, "__module__": module},
        )
        generic.__qualname__ = qualname
        return generic
    cached = _CACHE.get(original)
    if cached is not None:
        return cached
    namespace = {
        "__module__": original.__module__,
        "__qualname__": original.__qualname__,
        "_standin_module": module,
        "_standin_qualname": qualname,
        # the original class's own methods may expect state its __init__ set: ours don't
        "__str__": ExceptionStandIn.__str__,
        "__repr__": ExceptionStandIn.__repr__,
        "__reduce__": ExceptionStandIn.__reduce__,
        "__getattr__": _no_attribute,
    }
    try:
        cls = type(original.__name__, (original, ExceptionStandIn), namespace)
    except TypeError:  # a class that cannot be subclassed (or with a conflicting layout)
        return _standin_class(None, module, qualname)
    _CACHE[original] = cls
    return cls


def _no_attribute(self: BaseException, name: str) -> Any:
    raise AttributeError(
        f"{type(self).__qualname__!r} stand-in has no attribute {name!r} (the original "
        "exception could not be pickled, so only the attributes that pickle came back)"
    )
