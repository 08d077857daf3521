from __future__ import annotations

from typing import Protocol

from gateway.records import DecisionRecord


class Sink(Protocol):
    """Takes decision records without making the request wait, and loses none of them."""

    def submit(self, record: DecisionRecord) -> None:
        """Queue a record; returns at once."""

    def close(self) -> None:
        """Write everything queued, then release resources."""
