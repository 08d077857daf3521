"""With tracing on, a chat request leaves its spans (input guard, backend, output guard) and its outcome."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import Settings
from gateway.telemetry import Tracing

pytestmark = pytest.mark.anyio


async def test_a_request_leaves_its_spans(tmp_path: Path, stub_url: str, test_policy_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = Settings.load(
        upstream={"url": stub_url},
        policy_file=test_policy_path,
        cache_dir=tmp_path,
        classifiers={"enabled": False},
    )
    app = create_app(settings, registry=CollectorRegistry(), tracing=Tracing(True, tracer_provider=provider))
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0)
        await client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": "say: hi"}]
        )
        await client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": "the launch codes"}]
        )
        await http.aclose()
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("railguard.chat") == 2
    assert {"railguard.input_guard", "railguard.backend", "railguard.output_guard"} <= set(names)
    chats = [s for s in spans if s.name == "railguard.chat"]
    assert [s.attributes["railguard.action"] for s in chats] == ["allow", "refuse"]  # type: ignore[index]
    backend = next(s for s in spans if s.name == "railguard.backend")
    assert backend.parent is not None and backend.parent.span_id == chats[0].context.span_id
