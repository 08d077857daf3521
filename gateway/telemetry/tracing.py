"""OpenTelemetry tracing, off by default.

With tracing off nothing of OpenTelemetry is imported and `span()` costs one `nullcontext`. With it
on, spans go to an OTLP/HTTP collector (`pip install 'railguard[otel]'`), or to the tracer provider
the caller passes (tests pass one with an in-memory exporter). The global provider is never set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from gateway.records import DecisionRecord

__all__ = ["Tracing"]

_AttributeValue = str | bool | int | float


class Tracing:
    def __init__(
        self,
        enabled: bool = False,
        *,
        service_name: str = "railguard",
        endpoint: str | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.enabled = enabled
        self._tracer: Any = None
        self._provider: Any = None
        if enabled:
            self._provider = tracer_provider or _otlp_provider(service_name, endpoint)
            self._tracer = self._provider.get_tracer("railguard")

    def span(self, name: str, **attributes: _AttributeValue) -> AbstractContextManager[Any]:
        """A span around one step (`input_guard`, `backend`, ...); a no-op when tracing is off."""
        if self._tracer is None:
            return nullcontext()
        return self._span(name, attributes)

    @contextmanager
    def _span(self, name: str, attributes: dict[str, _AttributeValue]) -> Iterator[Any]:
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    def annotate(self, span: Any, record: DecisionRecord) -> None:
        """Put a finished request's outcome on its span."""
        if span is None or self._tracer is None:
            return
        span.set_attributes(
            {
                "railguard.request_id": record.request_id,
                "railguard.tenant": record.tenant,
                "railguard.action": record.action.value,
                "railguard.categories": list(record.categories),
                "railguard.policy_version": record.policy_version,
                "gen_ai.request.model": record.model,
                "gen_ai.usage.input_tokens": record.prompt_tokens,
                "gen_ai.usage.output_tokens": record.completion_tokens,
                "http.response.status_code": record.status,
            }
        )

    def shutdown(self) -> None:
        if self._provider is not None and hasattr(self._provider, "shutdown"):
            self._provider.shutdown()


def _otlp_provider(service_name: str, endpoint: str | None) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            "tracing is on but OpenTelemetry's SDK or OTLP exporter is missing: pip install 'railguard[otel]'"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
