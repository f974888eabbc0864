"""Run parameters given as text (``--param date=2026-11-24``), converted by annotation.

=========================  ================================================================
annotation                 the text it takes
=========================  ================================================================
``int``, ``float``         ``42``, ``2.5``
``bool``                   ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``
``datetime.date``          ``2026-11-24``
``datetime.datetime``      ``2026-11-24T02:00:00``, optionally with ``Z`` or ``+01:00``
``datetime.time``          ``02:00`` or ``02:00:30``
``pathlib.Path``           any non-empty path
an ``Enum``                a member's name or value: ``red``
``Literal["a", "b"]``      one of the listed values
``list``, ``dict``         JSON: ``[1, 2]``, ``{"region": "eu"}`` (``list[int]`` checks items)
``X | None``               what ``X`` takes
anything else, ``str``     the text as it is
=========================  ================================================================
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import types
import typing
from pathlib import PurePath
from typing import Any

__all__ = ["ParamValueError", "convert", "describe"]


class ParamValueError(ValueError):
    """A text that does not convert to its parameter's annotated type; says what would."""

    def __init__(self, value: str, kind: str, expected: str) -> None:
        self.value, self.kind, self.expected = value, kind, expected
        super().__init__(f"{value!r} is not a valid {kind}; expected {expected}")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_SCALARS: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def _unwrap(ann: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None``; ``None`` for a union of several types."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return args[0] if len(args) == 1 else None
    if isinstance(ann, str):  # an annotation that could not be resolved: scalars by name
        parts = [p.strip() for p in ann.replace("Optional[", "").rstrip("]").split("|")]
        parts = [p for p in parts if p not in ("None", "")]
        return _SCALARS.get(parts[0]) if len(parts) == 1 else None
    return ann


def describe(ann: Any) -> str:
    """The annotation as a user wrote it: ``int``, ``date``, ``list[int]``, ``Color``."""
    ann = _unwrap(ann)
    if isinstance(ann, type) and not typing.get_args(ann):
        return ann.__name__
    return str(ann).replace("typing.", "")


def convert(text: str, ann: Any) -> Any:
    """``text`` converted to annotation ``ann`` (see the module docstring for the forms).

    Raises:
        ParamValueError: the text is not a value of that type; the message gives the form.
    """
    ann = _unwrap(ann)
    if ann is None or ann is str or ann is Any:
        return text
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        for choice in typing.get_args(ann):
            if str(choice) == text:
                return choice
        listed = ", ".join(repr(str(c)) for c in typing.get_args(ann))
        raise ParamValueError(text, describe(ann), f"one of {listed}")
    if origin in (list, dict) or ann in (list, dict):
        return _json(text, ann, origin or ann)
    if not isinstance(ann, type):
        return text
    if issubclass(ann, bool):
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ParamValueError(text, "bool", "true or false (also yes/no, on/off, 1/0)")
    if issubclass(ann, enum.Enum):
        return _member(text, ann)
    kind = ann.__name__
    try:
        if issubclass(ann, int):
            return ann(text)
        if issubclass(ann, float):
            return ann(text)
        if issubclass(ann, dt.datetime):  # before date: a datetime is a date
            return ann.fromisoformat(text.strip())
        if issubclass(ann, dt.date):
            return ann.fromisoformat(text.strip())
        if issubclass(ann, dt.time):
            return ann.fromisoformat(text.strip())
    except ValueError:
        raise ParamValueError(text, kind, _FORMS[_family(ann)]) from None
    if issubclass(ann, PurePath):
        if not text.strip():
            raise ParamValueError(text, kind, "a non-empty path, like data/input.csv")
        return ann(text)
    return text  # a type flowkit does not know how to build: the step gets the text


def _family(ann: type) -> type:
    for base in (dt.datetime, dt.date, dt.time, int, float):
        if issubclass(ann, base):
            return base
    return ann  # pragma: no cover - callers pass only the types above


_FORMS: dict[type, str] = {
    int: "a whole number, like 42",
    float: "a number, like 2.5",
    dt.date: "a date as YYYY-MM-DD, like 2026-11-24",
    dt.datetime: (
        "a date and time as YYYY-MM-DDTHH:MM[:SS], like 2026-11-24T02:00:00 "
        "(a time zone such as Z or +01:00 may follow)"
    ),
    dt.time: "a time as HH:MM[:SS], like 02:00",
}


def _member(text: str, ann: type[enum.Enum]) -> enum.Enum:
    for member in ann:
        if member.name == text or str(member.value) == text:
            return member
    low = text.lower()  # forgiving about case only when that is unambiguous
    matches = [m for m in ann if m.name.lower() == low or str(m.value).lower() == low]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(str(m.value) if isinstance(m.value, str) else m.name for m in ann)
    raise ParamValueError(text, ann.__name__, f"one of: {names}")


def _json(text: str, ann: Any, container: type) -> Any:
    example = "[1, 2, 3]" if container is list else '{"region": "eu", "limit": 10}'
    expected = f"a JSON {'array' if container is list else 'object'}, like {example}"
    kind = describe(ann)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamValueError(text, kind, f"{expected} ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, container):
        raise ParamValueError(text, kind, expected)
    args = typing.get_args(ann)
    item_type = args[0] if container is list and args else (args[1] if len(args) == 2 else None)
    if item_type in (int, float, str, bool):
        items: list[Any] = (
            value if isinstance(value, list) else list(typing.cast(dict[str, Any], value).values())
        )
        if not all(_is_a(item, item_type) for item in items):
            what = f"{expected}, whose items are {item_type.__name__}"
            raise ParamValueError(text, kind, what)
    return value


def _is_a(item: Any, kind: type) -> bool:
    if isinstance(item, bool) and kind is not bool:  # JSON true is not a number here
        return False
    return isinstance(item, kind) or (kind is float and isinstance(item, int))
