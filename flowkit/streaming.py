"""Running a flow in a background thread and yielding its events as they happen
(:meth:`flowkit.Flow.stream`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Mapping
from typing import Any

from .events import Event

__all__ = ["stream_run"]


def stream_run(
    run: Callable[..., Any],
    name: str,
    params: Mapping[str, Any] | None,
    run_kwargs: dict[str, Any],
) -> Generator[Event, None, None]:
    """Call ``run(params, on_event=..., **run_kwargs)`` in a thread named after flow ``name``
    and yield its events; see :meth:`flowkit.Flow.stream`."""
    events: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
    errors: list[BaseException] = []
    consuming = True
    user_cb: Callable[[Event], Any] | None = run_kwargs.pop("on_event", None)

    def on_event(event: Event) -> None:
        if consuming:
            events.put(event)
        if user_cb is not None:
            user_cb(event)

    def target() -> None:
        try:
            run(params, on_event=on_event, **run_kwargs)
        except BaseException as exc:
            errors.append(exc)
        finally:
            events.put(None)

    worker = threading.Thread(target=target, name=f"flowkit-stream-{name}")
    worker.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:
        consuming = False  # an early stop: the run carries on, unobserved
    worker.join()
    if errors:
        raise errors[0]
