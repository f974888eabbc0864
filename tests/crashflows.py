"""Flows that tests/test_resume.py runs in real `python -m flowkit run` subprocesses.

Every step calls :func:`_hook` first, which appends the step's name to ``$CRASHFLOWS_DIR/counter``
(one O_APPEND write per execution, so the file counts executions even across a SIGKILL) and then,
if the environment asks for it, crashes the process (``CRASHFLOWS_CRASH=<step>``: ``os._exit(3)``)
or blocks it (``CRASHFLOWS_BLOCK=<step>``: sleeps until killed). Steps that produce a final result
write it to a file in ``$CRASHFLOWS_DIR`` so the test can check what downstream steps received.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowkit import Flow

COUNTER = "counter"
CRASH_CODE = 3


def _dir() -> Path:
    folder = os.environ.get("CRASHFLOWS_DIR")
    if not folder:
        raise RuntimeError("CRASHFLOWS_DIR is not set")
    return Path(folder)


def _hook(name: str) -> None:
    """Count this execution, then crash or block when the environment says so."""
    fd = os.open(_dir() / COUNTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
    finally:
        os.close(fd)
    if os.environ.get("CRASHFLOWS_CRASH") == name:
        os._exit(CRASH_CODE)
    if os.environ.get("CRASHFLOWS_BLOCK") == name:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the test kills the process
            time.sleep(0.05)
        raise RuntimeError(f"step {name} was blocked for 60s and nobody killed it")


def _write(filename: str, text: str) -> None:
    (_dir() / filename).write_text(text)


# --- chain: load -> (double, triple) -> combine -> report ---------------------------------------

chain = Flow("chain")


@chain.step()
def load() -> int:
    _hook("load")
    return 10


@chain.step()
def double(load: int) -> int:
    _hook("double")
    return load * 2


@chain.step()
def triple(load: int) -> int:
    _hook("triple")
    return load * 3


@chain.step()
def combine(double: int, triple: int) -> int:
    _hook("combine")
    return double * 100 + triple


@chain.step()
def report(combine: int, load: int) -> str:
    _hook("report")
    text = f"combine={combine} load={load}"
    _write("report.txt", text)
    return text


CHAIN_STEPS = ("load", "double", "triple", "combine", "report")
CHAIN_REPORT = "combine=2030 load=10"


# --- ctxflow: values passed only through ctx ----------------------------------------------------

ctxflow = Flow("ctxflow")


@ctxflow.step()
def remember(ctx: Any) -> None:
    _hook("remember")
    ctx["token"] = "tok-42"  # JSON-exact: stored inline
    ctx["shape"] = (2, 3)  # a tuple: stored in a side file


@ctxflow.step()
def count(ctx: Any) -> None:
    _hook("count")
    ctx["n"] = 7


@ctxflow.step(depends_on=["remember", "count"])
def consume(ctx: Any) -> str:
    _hook("consume")
    shape = ctx["shape"]
    text = f"token={ctx['token']} shape={shape!r} {type(shape).__name__} n={ctx['n']}"
    _write("ctx.txt", text)
    return text


CTX_STEPS = ("remember", "count", "consume")
CTX_REPORT = "token=tok-42 shape=(2, 3) tuple n=7"


# --- typed: outputs JSON cannot hold exactly ----------------------------------------------------


class Point:
    """A custom class: its instances can only be restored by unpickling."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))

    def __repr__(self) -> str:
        return f"Point({self.x}, {self.y})"


typed = Flow("typed")


@typed.step()
def make_tuple() -> tuple[int, str]:
    _hook("make_tuple")
    return (1, "a")


@typed.step()
def make_set() -> set[int]:
    _hook("make_set")
    return {3, 1, 2}


@typed.step()
def make_dt() -> dt.datetime:
    _hook("make_dt")
    return dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


@typed.step()
def make_obj() -> Point:
    _hook("make_obj")
    return Point(1, 2)


def _describe(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__} {value!r}"


@typed.step()
def check(make_tuple: Any, make_set: Any, make_dt: Any, make_obj: Any) -> str:
    _hook("check")
    lines = [_describe(v) for v in (make_tuple, make_set, make_dt, make_obj)]
    lines.append(f"is Point: {type(make_obj) is Point}")
    text = "\n".join(lines)
    _write("types.txt", text)
    return text


TYPES_PRODUCERS = ("make_tuple", "make_set", "make_dt", "make_obj")
TYPES_STEPS = (*TYPES_PRODUCERS, "check")
TYPES_REPORT = "\n".join(
    [
        "builtins.tuple (1, 'a')",
        "builtins.set {1, 2, 3}",
        "datetime.datetime datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)",
        "crashflows.Point Point(1, 2)",
        "is Point: True",
    ]
)


# --- many: 50 steps, random DAG, tiny sleeps (the kill-anywhere test) ---------------------------

MANY_SIZE = 50
MANY_SINK = "sink"


def _many_value(name: str, index: int, inputs: list[Any]) -> Any:
    total = index + 1
    for v in inputs:
        total = (total * 31 + (v[0] if isinstance(v, tuple) else v)) % 1_000_003
    # every fifth step returns a tuple: an output stored as a pickled side file
    return (total, name) if index % 5 == 0 else total


def _many_step(name: str, index: int, ups: tuple[str, ...], pause: float) -> Callable[..., Any]:
    def run(**inputs: Any) -> Any:
        _hook(name)
        time.sleep(pause)
        value = _many_value(name, index, [inputs[u] for u in ups])
        if name == MANY_SINK:
            _write("sink.txt", repr(value))
        return value

    # named keyword parameters (one per upstream): each receives that upstream's output
    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(u, inspect.Parameter.KEYWORD_ONLY) for u in ups]
    )
    run.__name__ = run.__qualname__ = name
    return run


def _build_many() -> tuple[Flow, dict[str, tuple[str, ...]]]:
    rng = random.Random(20240101)
    flow = Flow("many")
    names = [f"s{i:02d}" for i in range(MANY_SIZE - 1)] + [MANY_SINK]
    upstream: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        if name == MANY_SINK:
            # the sink depends on every step nothing else depends on
            used = {u for ups in upstream.values() for u in ups}
            ups = tuple(n for n in names[:i] if n not in used)
        elif i == 0:
            ups = ()
        else:
            window = names[max(0, i - 12) : i]
            ups = tuple(sorted(rng.sample(window, min(rng.randint(0, 3), len(window)))))
        pause = rng.choice((0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05))
        upstream[name] = ups
        flow.step(name=name)(_many_step(name, i, ups, pause))
    return flow, upstream


many, MANY_UPSTREAM = _build_many()
