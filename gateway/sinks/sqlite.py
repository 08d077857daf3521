"""The embedded store: SQLite, written by one background thread in batches.

`submit` only puts the record on a queue; the writer thread commits whatever has accumulated in one
transaction. `close` drains the queue before returning, so a clean shutdown loses nothing.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

from gateway.records import DecisionRecord
from gateway.sinks.base import SinkEvents

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    request_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    tenant TEXT NOT NULL,
    action TEXT NOT NULL,
    flagged INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_created ON records (created);
"""
_STOP = object()


class SQLiteSink:
    def __init__(self, path: Path, *, flagged_only: bool = True, events: SinkEvents | None = None) -> None:
        self.path = path
        self.flagged_only = flagged_only
        self._events = events
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.executescript(_SCHEMA)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._run, name="railguard-sqlite-sink", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def submit(self, record: DecisionRecord) -> None:
        if record.flagged or not self.flagged_only:
            self._queue.put(record)

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join()

    def _run(self) -> None:
        with closing(self._connect()) as conn:
            stopping = False
            while not stopping:
                batch = [self._queue.get()]
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stopping = any(item is _STOP for item in batch)
                records = [item for item in batch if item is not _STOP]
                if records:
                    self._write(conn, records)

    def _write(self, conn: sqlite3.Connection, records: list[DecisionRecord]) -> None:
        rows = [
            (
                r.request_id,
                r.created,
                r.tenant,
                r.action.value,
                int(r.flagged),
                orjson.dumps(r.to_json()).decode(),
            )
            for r in records
        ]
        for attempt in range(5):
            try:
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?)", rows)
                if self._events is not None:
                    self._events.sink_event("written", len(rows))
                    self._events.set_sink_lag(max(0.0, time.time() - min(r.created for r in records)))
                return
            except sqlite3.OperationalError:
                log.warning("sqlite sink write failed (attempt %d), retrying", attempt + 1)
                threading.Event().wait(0.2 * (attempt + 1))
        log.error("sqlite sink could not write %d records to %s", len(rows), self.path)
        if self._events is not None:
            self._events.sink_event("dropped", len(rows))


def read_records(path: Path, *, limit: int = 100) -> Iterator[dict[str, Any]]:
    """The newest records first, as dicts (for the CLI and tests)."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT record FROM records ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
    for (text,) in rows:
        yield orjson.loads(text)
