"""Telemetry: Prometheus metrics, the model-refusal detector, JSON request logs, optional tracing.

from gateway.telemetry import Telemetry
telemetry = Telemetry(CollectorRegistry())
telemetry.observe(record)            # once per finished request
body, content_type = telemetry.render()
"""

from classifiers.refusals import REFUSAL_PATTERNS, RefusalDetector, is_refusal
from gateway.telemetry.labels import LANGUAGES, OTHER, BoundedLabel
from gateway.telemetry.logs import JsonFormatter, RequestLog, configure_json_logging, log_fields
from gateway.telemetry.metrics import GUARD_FAILURE_MODES, SINK_EVENTS, Telemetry
from gateway.telemetry.tracing import Tracing

__all__ = [
    "GUARD_FAILURE_MODES",
    "LANGUAGES",
    "OTHER",
    "REFUSAL_PATTERNS",
    "SINK_EVENTS",
    "BoundedLabel",
    "JsonFormatter",
    "RefusalDetector",
    "RequestLog",
    "Telemetry",
    "Tracing",
    "configure_json_logging",
    "is_refusal",
    "log_fields",
]
