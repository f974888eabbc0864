"""Flows whose steps look at the OpenTelemetry context they run in (workers import this)."""

from __future__ import annotations

import asyncio

from opentelemetry import trace

from flowkit import Flow


def _current() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


inside = Flow("traced_inside")


@inside.step()
def query() -> dict[str, str]:
    with trace.get_tracer("tests").start_as_current_span("select 1"):
        pass  # an instrumented driver's span: a child of the step's span
    return _current()


@inside.step()
async def fetch() -> dict[str, str]:
    await asyncio.sleep(0)
    with trace.get_tracer("tests").start_as_current_span("GET /"):
        pass
    return _current()
