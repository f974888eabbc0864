"""Flows for the dashboard tests: steps that wait for gate files, so a test decides when each
step moves on while it watches the run page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flowkit import Flow, step


def wait_for(gate: str, name: str, limit: float = 60.0) -> None:
    """Block until the file ``gate/name`` exists (the test creates it)."""
    path = Path(gate) / name
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.01)


live = Flow("live")


@live.step()
def first(gate: str) -> list[int]:
    print("first: waiting for its gate", flush=True)
    wait_for(gate, "first")
    return [1, 2, 3]


@live.step(retries=1, backoff=0.6)
def flaky(ctx: Any, first: list[int], gate: str) -> int:
    if ctx.attempt == 1:
        wait_for(gate, "flaky-1")
        raise ConnectionError("the <server> went away")
    print("flaky: second attempt under way", flush=True)
    wait_for(gate, "flaky-2")
    return len(first) + 1


@live.step(map_over="first")
def spread(first: int, gate: str) -> int:
    wait_for(gate, "spread")
    return first


def wide(n: int) -> Flow:
    """A flow of ``n`` small steps in chains of ten (a large run for the dashboard)."""
    flow = Flow(f"wide{n}")
    for i in range(n):
        deps = [f"s{i - 1}"] if i % 10 else []

        def fn() -> int:
            return 1

        fn.__name__ = fn.__qualname__ = f"s{i}"
        flow.add(step(name=f"s{i}", depends_on=deps, code_version="1")(fn))
    return flow


failing = Flow("failing")


@failing.step()
def boom() -> None:
    print("about to fail <b>loudly</b>", flush=True)
    raise ValueError("bad <script>alert('x')</script> value")
