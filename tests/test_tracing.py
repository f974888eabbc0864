"""The step's span is the current OpenTelemetry context inside the step, on every executor; the
CLI's ``--trace`` configures the SDK from the OTEL_* variables and reports the trace id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from flowkit.otel import OtelListener

TESTS = Path(__file__).parent


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    from opentelemetry import trace

    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    # spans made inside steps go through the global provider, as an instrumented library's do
    old = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = provider
    try:
        yield exp, provider
    finally:
        trace._TRACER_PROVIDER = old


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def ids(span: ReadableSpan) -> dict[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


@pytest.mark.parametrize(("executor", "workers"), [("inline", 1), ("thread", 2), ("process", 2)])
def test_the_step_span_is_the_parent_of_spans_made_inside_the_step(
    executor: str,
    workers: int,
    exporter: tuple[InMemorySpanExporter, TracerProvider],
    tmp_path: Path,
) -> None:
    import tracedflows

    exp, provider = exporter
    result = tracedflows.inside.run(
        state_dir=tmp_path, executor=executor, workers=workers, listeners=[OtelListener(provider)]
    )
    assert result.ok, result.summary()
    spans = by_name(exp.get_finished_spans())
    run = spans["run traced_inside"]
    assert result.trace_id == ids(run)["trace_id"]
    for step, inner in (("query", "select 1"), ("fetch", "GET /")):
        step_span = spans[f"step {step}"]
        # what the step saw as current: its own span, in the run's trace
        assert result[step].output == ids(step_span)
        if executor != "process":  # a worker process exports its spans itself
            child = spans[inner]
            assert child.parent is not None and child.parent.span_id == step_span.context.span_id
            assert child.context.trace_id == run.context.trace_id
    report = json.loads(next(tmp_path.rglob("report.json")).read_text())
    assert report["trace_id"] == result.trace_id


def test_without_a_tracer_steps_see_no_span(tmp_path: Path) -> None:
    import tracedflows

    result = tracedflows.inside.run(state_dir=tmp_path)
    assert result["query"].output["trace_id"] == "0" * 32
    assert result.trace_id is None
    assert "trace_id" not in json.loads(next(tmp_path.rglob("report.json")).read_text())


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    full["PYTHONPATH"] = os.pathsep.join([str(TESTS), full.get("PYTHONPATH", "")])
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "flowkit", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _console_spans(stderr: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter wrote, one per span."""
    spans, depth, start = [], 0, None
    for i, ch in enumerate(stderr):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                spans.append(json.loads(stderr[start : i + 1]))
    return spans


def test_trace_switch_exports_spans_named_after_the_flow_and_prints_the_trace_id(
    tmp_path: Path,
) -> None:
    proc = _cli(
        tmp_path,
        *["run", "tracedflows:inside", "--trace", "--state-dir", str(tmp_path)],
        OTEL_TRACES_EXPORTER="console",
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if x.startswith("flowkit: trace id "))
    trace_id = line.split()[-1]
    assert len(trace_id) == 32
    spans = _console_spans(proc.stderr)
    names = {s["name"] for s in spans}
    assert {"run traced_inside", "step query", "select 1", "step fetch", "GET /"} <= names
    assert all(
        s["resource"]["attributes"]["service.name"] == "flowkit:traced_inside" for s in spans
    )
    assert all(s["context"]["trace_id"] == "0x" + trace_id for s in spans)
    report = json.loads(next(tmp_path.rglob("report.json")).read_text())
    assert report["trace_id"] == trace_id


def test_trace_switch_takes_the_service_name_from_the_environment(tmp_path: Path) -> None:
    proc = _cli(
        tmp_path,
        *["run", "tracedflows:inside", "--trace", "--state-dir", str(tmp_path)],
        OTEL_TRACES_EXPORTER="console",
        OTEL_SERVICE_NAME="nightly-etl",
    )
    assert proc.returncode == 0, proc.stderr
    spans = _console_spans(proc.stderr)
    assert spans and {s["resource"]["attributes"]["service.name"] for s in spans} == {"nightly-etl"}


def test_an_unknown_exporter_is_a_usage_error(tmp_path: Path) -> None:
    proc = _cli(
        tmp_path,
        *["run", "tracedflows:inside", "--trace", "--state-dir", str(tmp_path)],
        OTEL_TRACES_EXPORTER="zipkin",
    )
    assert proc.returncode == 2
    assert "OTEL_TRACES_EXPORTER='zipkin' is not supported with --trace" in proc.stderr
    assert not list(tmp_path.rglob("journal.jsonl"))
