"""Importable flows for tests (process workers need module-level functions)."""

from __future__ import annotations

import time

from flowkit import Flow, step

diamond = Flow("diamond")


@diamond.step()
def top() -> int:
    return 1


@diamond.step()
def left(top: int) -> int:
    time.sleep(0.01)
    return top + 10


@diamond.step()
def right(top: int) -> int:
    return top + 100


@diamond.step()
def join(left: int, right: int) -> int:
    return left + right


async def _async_double(x: int) -> int:
    return x * 2


@step
async def doubled(join: int) -> int:
    return await _async_double(join)


diamond_async = Flow("diamond_async", steps=[top, left, right, join, doubled])
