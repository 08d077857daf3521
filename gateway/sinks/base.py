from __future__ import annotations

from typing import Protocol

from gateway.records import DecisionRecord


class Sink(Protocol):
    """Takes decision records without making the request wait, and loses none of them."""

    def submit(self, record: DecisionRecord) -> None:
        """Queue a record; returns at once."""

    def close(self) -> None:
        """Write everything queued, then release resources."""


class SinkEvents(Protocol):
    """Where a sink reports what it did (telemetry implements it)."""

    def sink_event(self, event: str, count: int = 1) -> None: ...

    def set_sink_lag(self, seconds: float) -> None: ...
