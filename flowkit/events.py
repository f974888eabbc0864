"""Typed, immutable run events and the listener interface.

The console output, the logging bridge, the run report and any user callback all consume the same
stream. A listener that raises is logged and ignored: it never fails a run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .result import ErrorInfo, RunResult, RunStatus, Status

__all__ = [
    "Event",
    "Listener",
    "RunFinished",
    "RunStarted",
    "StepCached",
    "StepFailed",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepSucceeded",
    "emit",
]

log = logging.getLogger("flowkit")


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    flow: str
    params: dict[str, Any]
    total: int
    time: float
    resumed: bool


@dataclass(frozen=True, slots=True)
class StepStarted:
    run_id: str
    step: str
    attempt: int
    time: float
    reason: str


@dataclass(frozen=True, slots=True)
class StepRetrying:
    run_id: str
    step: str
    attempt: int
    time: float
    error: ErrorInfo
    delay_s: float
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    run_id: str
    step: str
    attempts: int
    time: float
    duration_s: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StepFailed:
    run_id: str
    step: str
    attempts: int
    time: float
    duration_s: float
    error: ErrorInfo
    timed_out: bool = False
    #: the step's captured output (``<run dir>/logs/<step>.log``), when the engine knows it
    log_path: str | None = None


@dataclass(frozen=True, slots=True)
class StepSkipped:
    """A step that will not run: ``status`` is ``skipped`` or ``upstream_failed``."""

    run_id: str
    step: str
    time: float
    reason: str
    status: Status = Status.SKIPPED


@dataclass(frozen=True, slots=True)
class StepCached:
    run_id: str
    step: str
    time: float
    duration_s: float
    attempts: int


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    status: RunStatus
    time: float
    result: RunResult


Event = (
    RunStarted
    | StepStarted
    | StepRetrying
    | StepSucceeded
    | StepFailed
    | StepSkipped
    | StepCached
    | RunFinished
)


@runtime_checkable
class Listener(Protocol):
    """Anything with ``on_event(event)``; plain callables are accepted too."""

    def on_event(self, event: Event) -> None: ...


ListenerLike = Listener | Callable[[Event], Any]


def as_callbacks(listeners: Iterable[ListenerLike]) -> list[Callable[[Event], Any]]:
    """Normalise listeners and callables to callables."""
    return [x.on_event if isinstance(x, Listener) else x for x in listeners]


def emit(callbacks: Iterable[Callable[[Event], Any]], event: Event) -> None:
    """Deliver ``event`` to each callback; a callback that raises is logged, never propagated."""
    for cb in callbacks:
        try:
            cb(event)
        except Exception:
            log.exception("flowkit listener %r failed on %s", cb, type(event).__name__)
