"""A flow with a hanging step, for the process-executor timeout test."""

from __future__ import annotations

import time

from flowkit import Flow

hangs = Flow("hangs")


@hangs.step(timeout=0.5)
def stuck() -> None:
    time.sleep(60)


@hangs.step()
def fine() -> int:
    return 1
