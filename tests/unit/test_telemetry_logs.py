"""Structured request logs (one JSON line per request) and optional OpenTelemetry tracing."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.policy.verdict import Action, Stage, Verdict
from gateway.records import DecisionRecord, Latencies
from gateway.telemetry import JsonFormatter, RequestLog, Tracing

RECORD = DecisionRecord(
    request_id="req-42",
    created=0.0,
    tenant="acme",
    model="gemma",
    backend="upstream",
    policy_version="p1",
    language="en",
    stream=False,
    action=Action.REFUSE,
    status=200,
    input=Verdict(Stage.INPUT, Action.REFUSE, categories=("violence",)),
    latency=Latencies(input_guard_ms=1.25, total_ms=3.0),
    prompt=[{"role": "user", "content": "secret prompt"}],
    response="secret response",
)


@pytest.fixture
def log_stream() -> io.StringIO:
    return io.StringIO()


def test_one_json_line_per_request_without_prompt_or_response(log_stream: io.StringIO) -> None:
    logger = logging.getLogger("railguard.test.access")
    handler = logging.StreamHandler(log_stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        RequestLog(logger).log(RECORD)
    finally:
        logger.removeHandler(handler)
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["request_id"] == "req-42"
    assert line["action"] == "refuse" and line["categories"] == ["violence"]
    assert line["latency_ms"]["guard"] == 1.25
    assert line["level"] == "info" and line["logger"] == "railguard.test.access"
    assert "secret" not in lines[0]


def test_tracing_is_off_by_default_and_imports_nothing() -> None:
    code = (
        "import sys; from gateway.telemetry import Tracing; t = Tracing();"
        "cm = t.span('x'); cm.__enter__(); cm.__exit__(None, None, None);"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_tracing_on_records_spans_with_the_outcome() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(True, tracer_provider=provider)
    with tracing.span("request", route="/v1/chat/completions") as span:
        with tracing.span("input_guard"):
            pass
        tracing.annotate(span, RECORD)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"request", "input_guard"}
    assert spans["input_guard"].parent is not None
    assert spans["input_guard"].parent.span_id == spans["request"].context.span_id
    attributes = spans["request"].attributes or {}
    assert attributes["railguard.action"] == "refuse"
    assert attributes["railguard.request_id"] == "req-42"
    tracing.shutdown()
