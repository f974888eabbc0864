"""OpenTelemetry tracing of runs (extra ``flowkit[otel]``): a span per run and per step attempt.

::

    from flowkit.otel import OtelListener
    flow.run(listeners=[OtelListener()])        # uses the global tracer provider

The run's span (``run <flow>``) is a child of whatever span is current when the run starts; each
step attempt is a ``step <name>`` span under it, timed by the attempt's own start and end.
Attributes: ``flowkit.run_id``, ``flowkit.flow``, ``flowkit.step``, ``flowkit.attempt``,
``flowkit.status`` (``succeeded``, ``failed``, ``timed_out``, ``retrying``; for the run, the run's
status) and ``flowkit.error``; failed attempts get the span status ERROR and an ``exception`` event.
Cached, skipped and upstream_failed steps, which have no attempt, are events on the run's span.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ExtraUnavailableError
from .events import (
    Event,
    RunFinished,
    RunStarted,
    StepCached,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepSucceeded,
)
from .result import ErrorInfo, RunStatus

if TYPE_CHECKING:
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["OtelListener"]


def _ns(t: float) -> int:
    return int(t * 1e9)


class OtelListener:
    """Turns the event stream into OpenTelemetry spans.

    Args:
        tracer_provider: the provider to get the tracer from (default: the global one).

    Raises:
        ExtraUnavailableError: ``opentelemetry-api`` is not installed (``flowkit[otel]``).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        try:
            from opentelemetry import trace
        except ImportError:
            raise ExtraUnavailableError(
                "OpenTelemetry tracing", "otel", "opentelemetry-api"
            ) from None
        from . import __version__

        self._trace = trace
        self.tracer = trace.get_tracer("flowkit", __version__, tracer_provider=tracer_provider)
        self._run: Span | None = None
        self._run_id = ""
        self._flow = ""
        self._attempts: dict[str, Span] = {}

    def _start_attempt(self, step: str, attempt: int, time: float) -> Span:
        parent = self._trace.set_span_in_context(self._run) if self._run is not None else None
        return self.tracer.start_span(
            f"step {step}",
            context=parent,
            start_time=_ns(time),
            attributes={
                "flowkit.run_id": self._run_id,
                "flowkit.flow": self._flow,
                "flowkit.step": step,
                "flowkit.attempt": attempt,
            },
        )

    def _end_attempt(
        self, step: str, attempt: int, time: float, status: str, error: ErrorInfo | None
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._attempts.pop(step, None)
        if span is None:  # failed without an attempt (a `when=` that raised, a fan-out)
            span = self._start_attempt(step, attempt, time)
        span.set_attribute("flowkit.status", status)
        if error is None:
            span.set_status(Status(StatusCode.OK))
        else:
            span.set_attribute("flowkit.error", str(error))
            span.add_event(
                "exception",
                {
                    "exception.type": error.type,
                    "exception.message": error.message,
                    "exception.stacktrace": error.traceback,
                },
                timestamp=_ns(time),
            )
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end(end_time=_ns(time))

    def _note(self, what: str, step: str, time: float, **attrs: Any) -> None:
        if self._run is not None:
            self._run.add_event(
                f"step {what}",
                {"flowkit.step": step, "flowkit.status": what, **attrs},
                timestamp=_ns(time),
            )

    def on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_id, self._flow = event.run_id, event.flow
            self._attempts.clear()
            self._run = self.tracer.start_span(
                f"run {event.flow}",
                start_time=_ns(event.time),
                attributes={
                    "flowkit.run_id": event.run_id,
                    "flowkit.flow": event.flow,
                    "flowkit.steps": event.total,
                    "flowkit.resumed": event.resumed,
                },
            )
        elif isinstance(event, StepStarted):
            self._attempts[event.step] = self._start_attempt(event.step, event.attempt, event.time)
        elif isinstance(event, StepSucceeded):
            self._end_attempt(event.step, event.attempts, event.time, "succeeded", None)
        elif isinstance(event, StepRetrying):
            self._end_attempt(event.step, event.attempt, event.time, "retrying", event.error)
        elif isinstance(event, StepFailed):
            status = "timed_out" if event.timed_out else "failed"
            self._end_attempt(event.step, event.attempts, event.time, status, event.error)
        elif isinstance(event, StepCached):
            self._note("cached", event.step, event.time)
        elif isinstance(event, StepSkipped):
            self._note(
                event.status.value, event.step, event.time, **{"flowkit.reason": event.reason}
            )
        elif isinstance(event, RunFinished):
            self._finish(event)

    def _finish(self, event: RunFinished) -> None:
        from opentelemetry.trace import Status, StatusCode

        end = _ns(event.time)
        for step, span in list(self._attempts.items()):  # never finished: interrupted, timed out
            span.set_attribute("flowkit.status", event.status.value)
            span.set_status(Status(StatusCode.ERROR, f"run {event.status.value}"))
            span.end(end_time=end)
            del self._attempts[step]
        run, self._run = self._run, None
        if run is None:
            return
        run.set_attribute("flowkit.status", event.status.value)
        for status, n in event.result.counts().items():
            run.set_attribute(f"flowkit.steps.{status}", n)
        if event.status is RunStatus.SUCCEEDED:
            run.set_status(Status(StatusCode.OK))
        else:
            failed = [r.name for r in event.result.steps.values() if r.status.failed]
            what = f"run {event.status.value}" + (f": {', '.join(failed[:5])}" if failed else "")
            run.set_status(Status(StatusCode.ERROR, what))
            if failed:
                run.set_attribute("flowkit.error", what)
        run.end(end_time=end)
