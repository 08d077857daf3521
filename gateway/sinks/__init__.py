"""Where decision records go: `Sink` is the seam; SQLite is the embedded default."""

from gateway.sinks.base import Sink
from gateway.sinks.sqlite import SQLiteSink

__all__ = ["SQLiteSink", "Sink"]
