from __future__ import annotations

from typing import Any, Protocol

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


class RecordLookup(Protocol):
    """A stored record by request id, from where the sink wrote it (a user's report on a request that
    the review queue has not taken)."""

    def find(self, request_id: str) -> dict[str, Any] | None:
        """The record (de-identified, as stored), or None when there is none."""

    def close(self) -> None: ...
