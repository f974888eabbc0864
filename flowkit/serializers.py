"""Typed storage: which serializer writes a step's output, chosen by the value's type.

``ByType`` is a registry of serializers, each for a kind of value. The default one
(:func:`default_registry`) stores pandas DataFrames as Parquet when ``pyarrow`` is installed,
Polars DataFrames as Parquet (``.pl.parquet``, written and read by Polars itself), NumPy arrays
as ``.npy``, and everything else with pickle. A value the chosen serializer cannot
store (a DataFrame with mixed-type columns for Parquet, say) falls back to pickle. A file is
read back by the serializer its suffix names, whatever the step or flow says now, so changing
the serializer never makes stored outputs unreadable.

A step picks its own with ``@step(serializer=...)`` (a serializer, or a ``ByType``); a flow's
``Flow(serializer=...)`` is the default for its steps.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
from collections.abc import Callable
from typing import Any

from .codec import PickleSerializer, Serializer

__all__ = [
    "ByType",
    "NumpySerializer",
    "ParquetSerializer",
    "PolarsParquetSerializer",
    "default_registry",
    "reader_for",
]


class ParquetSerializer:
    """pandas DataFrames as Parquet files (needs ``pyarrow``)."""

    suffix = ".parquet"

    def dumps(self, value: Any) -> bytes:
        buf = io.BytesIO()
        value.to_parquet(buf, engine="pyarrow")
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        pandas = importlib.import_module("pandas")
        return pandas.read_parquet(io.BytesIO(data), engine="pyarrow")


class PolarsParquetSerializer:
    """Polars DataFrames as Parquet files, written and read by Polars (no pyarrow needed). The
    suffix ``.pl.parquet`` keeps them apart from pandas' Parquet files, so each is read back as
    the kind of frame it was."""

    suffix = ".pl.parquet"

    def dumps(self, value: Any) -> bytes:
        buf = io.BytesIO()
        value.write_parquet(buf)
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        polars = importlib.import_module("polars")
        return polars.read_parquet(io.BytesIO(data))


class NumpySerializer:
    """NumPy arrays as ``.npy`` files (no pickled objects: arrays of Python objects are refused
    and go to the fallback)."""

    suffix = ".npy"

    def dumps(self, value: Any) -> bytes:
        numpy = importlib.import_module("numpy")
        buf = io.BytesIO()
        numpy.save(buf, value, allow_pickle=False)
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        numpy = importlib.import_module("numpy")
        return numpy.load(io.BytesIO(data), allow_pickle=False)


Matcher = Callable[[Any], bool]


class ByType:
    """Serializers chosen by the value: the first entry whose matcher accepts it, else
    ``fallback`` (pickle).

    ``ByType([(is_frame, ParquetSerializer())])``; :meth:`register` adds entries (a type, or a
    predicate). Satisfies :class:`~flowkit.Serializer` through its fallback, so it can stand
    wherever a serializer is expected.
    """

    def __init__(
        self,
        entries: list[tuple[type | Matcher, Serializer]] | None = None,
        fallback: Serializer | None = None,
    ) -> None:
        self.fallback: Serializer = fallback or PickleSerializer()
        self.suffix = self.fallback.suffix
        self.entries: list[tuple[Matcher, Serializer]] = []
        self._by_type: dict[type, Serializer] = {}
        for match, ser in entries or []:
            self.register(match, ser)

    def register(self, match: type | Matcher, serializer: Serializer) -> ByType:
        """Add an entry: values of type ``match`` (or for which ``match(value)`` is true)."""
        if isinstance(match, type):
            cls = match
            self.entries.append((lambda v: isinstance(v, cls), serializer))
        else:
            self.entries.append((match, serializer))
        self._by_type.clear()
        return self

    def for_value(self, value: Any) -> Serializer:
        """The serializer for ``value`` (decided once per type)."""
        t = type(value)
        ser = self._by_type.get(t)
        if ser is None:
            ser = next((s for m, s in self.entries if m(value)), self.fallback)
            self._by_type[t] = ser
        return ser

    def dumps(self, value: Any) -> bytes:
        return self.fallback.dumps(value)

    def loads(self, data: bytes) -> Any:
        return self.fallback.loads(data)

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for _, s in self.entries)
        return f"ByType([{names}], fallback={type(self.fallback).__name__})"


def _is_pandas_frame(value: Any) -> bool:
    t = type(value)
    return t.__name__ == "DataFrame" and t.__module__.startswith("pandas")


def _is_polars_frame(value: Any) -> bool:
    t = type(value)
    return t.__name__ == "DataFrame" and t.__module__.startswith("polars")


def _is_numpy_array(value: Any) -> bool:
    t = type(value)
    return t.__name__ == "ndarray" and t.__module__ == "numpy" and value.dtype.kind != "O"


def default_registry() -> ByType:
    """Parquet for pandas DataFrames when ``pyarrow`` is installed and for Polars DataFrames,
    ``.npy`` for NumPy arrays, pickle for everything else. The libraries are imported only when
    such a value comes by."""
    entries: list[tuple[type | Matcher, Serializer]] = []
    if importlib.util.find_spec("pyarrow") is not None:
        entries.append((_is_pandas_frame, ParquetSerializer()))
    entries.append((_is_polars_frame, PolarsParquetSerializer()))
    entries.append((_is_numpy_array, NumpySerializer()))
    return ByType(entries)


_READERS: dict[str, Serializer] = {  # the longer suffix first: .pl.parquet before .parquet
    ".pl.parquet": PolarsParquetSerializer(),
    ".parquet": ParquetSerializer(),
    ".npy": NumpySerializer(),
    ".pkl": PickleSerializer(),
}


def reader_for(ref: str, configured: Serializer) -> Serializer:
    """The serializer that reads the side file ``ref``: the configured one (or one of its
    entries) when its suffix matches, else the built-in one for that suffix, else the
    configured one."""
    candidates = [configured]
    if isinstance(configured, ByType):
        candidates = [s for _, s in configured.entries] + [configured.fallback]
    candidates.sort(key=lambda s: -len(s.suffix))  # (stable) .pl.parquet before .parquet
    for ser in candidates:
        if ref.endswith(ser.suffix):
            return ser
    for suffix, ser in _READERS.items():
        if ref.endswith(suffix):
            return ser
    return configured
