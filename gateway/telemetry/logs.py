"""Structured logs: JSON, one line per request, keyed by the request id.

Prompts and responses are never logged here (they go to the sink, redacted as the policy says).
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import orjson

from gateway.records import DecisionRecord

__all__ = ["ACCESS_LOGGER", "JsonFormatter", "RequestLog", "configure_json_logging", "log_fields"]

ACCESS_LOGGER = "railguard.access"

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats each log record as one JSON object: time, level, logger, message, then extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def log_fields(record: DecisionRecord) -> dict[str, Any]:
    """What one request's log line says: ids, outcome, categories, latencies, tokens."""
    lat = record.latency
    return {
        "request_id": record.request_id,
        "tenant": record.tenant,
        "model": record.model,
        "model_version": record.model_version,
        "adapter": record.adapter,
        "backend": record.backend,
        "policy_version": record.policy_version,
        "language": record.language,
        "stream": record.stream,
        "action": record.action.value,
        "status": record.status,
        "error_code": record.error_code,
        "categories": list(record.categories),
        "flagged": record.flagged,
        "latency_ms": {
            "total": round(lat.total_ms, 3),
            "guard": round(lat.guard_ms, 3),
            "backend": round(lat.backend_ms, 3),
            "ttft": lat.ttft_ms,
            "holdback": lat.holdback_ms,
        },
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
    }


class RequestLog:
    """Writes the one access-log line of a finished request."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    def log(self, record: DecisionRecord) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        level = logging.WARNING if record.status >= 500 else logging.INFO
        self.logger.log(level, "request", extra=log_fields(record))


def configure_json_logging(level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Send the `railguard` loggers to `stream` (stderr) as JSON lines. For CLI `main()` only."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("railguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    return handler
