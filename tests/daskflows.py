"""Flows for the Dask tests (workers import this module by name)."""

from __future__ import annotations

import os
from pathlib import Path

from flowkit import Flow


def count(counter: str, name: str) -> None:
    with Path(counter).open("a") as f:
        f.write(f"{name} {os.getpid()}\n")


branches = Flow("dask_branches")


@branches.step()
def source(counter: str) -> int:
    count(counter, "source")
    return 2


@branches.step(matrix={"k": [1, 2, 3]})
def scale(source: int, k: int, counter: str) -> int:
    count(counter, f"scale{k}")
    return source * k


@branches.step()
def side(source: int, counter: str) -> int:
    count(counter, "side")
    return source + 100


@branches.step()
def combine(scale: list[int], side: int, counter: str) -> dict[str, object]:
    count(counter, "combine")
    return {"scaled": scale, "side": side, "pid": os.getpid()}


worker_killer = Flow("dask_killer")


@worker_killer.step()
def before(counter: str) -> int:
    count(counter, "before")
    return 1


@worker_killer.step()
def dies_once(before: int, counter: str, marker: str) -> int:
    count(counter, "dies_once")
    if not Path(marker).exists():
        Path(marker).write_text("killed")
        os._exit(1)  # the worker process dies mid-step
    return before + 1


@worker_killer.step()
def after(dies_once: int, counter: str) -> int:
    count(counter, "after")
    return dies_once + 1


hinted = Flow("dask_hinted")


@hinted.step(cpus=1, memory="10MB")
def light(counter: str) -> int:
    count(counter, "light")
    return 1


@hinted.step(cpus=1)
def also_light(light: int, counter: str) -> int:
    count(counter, "also_light")
    return light + 1


too_big = Flow("dask_too_big")


@too_big.step(cpus=4096)
def enormous() -> None: ...
