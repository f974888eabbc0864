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

While an attempt runs, its span is the current OpenTelemetry context inside the step, on every
executor: the span's context is sent with the attempt (W3C ``traceparent``) and attached where
the step runs (a thread, a worker process, a Dask worker), so spans made inside the step by an
instrumented HTTP client or database driver are children of the step's span. The listener needs
only ``opentelemetry-api``; :func:`configure_tracing` (the CLI's ``--trace``) sets up the SDK.
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

__all__ = ["OtelListener", "configure_tracing"]


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
        self._trace_id: str | None = None

    @property
    def trace_id(self) -> str | None:
        """The trace id of the last run started (32 hex digits), or None (nothing sampled)."""
        return self._trace_id

    def attempt_context(self, step: str, attempt: int) -> dict[str, str] | None:
        """The running attempt's span context as W3C headers, sent with the attempt."""
        span = self._attempts.get(step)
        if span is None:
            return None
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=self._trace.set_span_in_context(span))
        return carrier or None

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
            ctx = self._run.get_span_context()
            self._trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
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


def configure_tracing(flow: str) -> Any:
    """Set up the OpenTelemetry SDK for a run from the standard ``OTEL_*`` variables; returns the
    tracer provider (call its ``shutdown()`` at the end to flush it).

    The exporter is ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console`` or ``none``); by default OTLP
    when ``opentelemetry-exporter-otlp`` is installed (configured by ``OTEL_EXPORTER_OTLP_*``),
    else the console (stderr). ``service.name`` is ``OTEL_SERVICE_NAME`` (or the one in
    ``OTEL_RESOURCE_ATTRIBUTES``), else ``flowkit:<flow>``.

    Raises:
        ExtraUnavailableError: the SDK is not installed (``flowkit[trace]``), or the OTLP exporter
            was asked for and is not installed.
        UsageError: ``OTEL_TRACES_EXPORTER`` names another exporter.
    """
    import os
    import sys

    from .errors import UsageError

    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError:
        raise ExtraUnavailableError("--trace", "trace", "opentelemetry-sdk") from None
    named = bool(os.environ.get("OTEL_SERVICE_NAME")) or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    resource = Resource.create({} if named else {"service.name": f"flowkit:{flow}"})
    provider = TracerProvider(resource=resource)
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")[0].strip().lower()
    otlp = _otlp_exporter()
    if kind in ("", "otlp") and otlp is not None:
        provider.add_span_processor(BatchSpanProcessor(otlp()))
    elif kind == "otlp":
        raise ExtraUnavailableError(
            "OTEL_TRACES_EXPORTER=otlp", "trace", "opentelemetry-exporter-otlp"
        )
    elif kind in ("", "console"):
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif kind != "none":
        raise UsageError(
            f"OTEL_TRACES_EXPORTER={kind!r} is not supported with --trace; use otlp, console "
            "or none"
        )
    trace.set_tracer_provider(provider)
    return provider


def _otlp_exporter() -> Any:
    """The OTLP span exporter class (protocol from ``OTEL_EXPORTER_OTLP_PROTOCOL``), if any."""
    import os

    grpc = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "grpc"
    try:
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        return None
    return OTLPSpanExporter
