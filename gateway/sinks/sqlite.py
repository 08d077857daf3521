"""The embedded store: SQLite, written by one background thread in batches.

`submit` only puts the record on a queue; the writer thread commits whatever has accumulated in one
transaction. `close` drains the queue before returning, so a clean shutdown loses nothing. When the
database refuses writes (locked, disk full, corrupt), the rows go to a spool file beside it and are
replayed after the next successful write, or at the next start.
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
from gateway.sinks.spool import Spool, create_private

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
    def __init__(
        self,
        path: Path,
        *,
        flagged_only: bool = True,
        events: SinkEvents | None = None,
        busy_timeout_s: float = 30.0,
        retries: int = 5,
    ) -> None:
        self.path = path
        self.spool = Spool(path.with_name(path.name + ".spool.jsonl"))
        self.flagged_only = flagged_only
        self._events = events
        self._busy_timeout_s = busy_timeout_s
        self._retries = retries
        create_private(path)  # the records hold conversations: owner only (SQLite's -wal/-shm follow)
        with closing(self._connect()) as conn:
            conn.executescript(_SCHEMA)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._run, name="railguard-sqlite-sink", daemon=True)
        self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s)
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
            self._replay(conn)  # what an earlier run could not write
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
                    rows = [_row(r) for r in records]
                    if self._insert(conn, rows):
                        self._report("written", len(rows), min(r.created for r in records))
                        self._replay(conn)
                    else:
                        self._spool(rows)

    def _insert(self, conn: sqlite3.Connection, rows: list[_Row]) -> bool:
        for attempt in range(self._retries):
            try:
                with conn:
                    conn.executemany("INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?)", rows)
                return True
            except sqlite3.Error as exc:
                log.warning("sqlite sink write failed (attempt %d): %s", attempt + 1, exc)
                threading.Event().wait(0.05 * (attempt + 1))
        return False

    def _spool(self, rows: list[_Row]) -> None:
        """The store refuses writes: keep the rows in a local file, replayed once it accepts them again."""
        self.spool.append([list(row) for row in rows])
        log.error("sqlite sink spooled %d records to %s", len(rows), self.spool.path)
        self._report("spooled", len(rows))

    def _replay(self, conn: sqlite3.Connection) -> None:
        if not self.spool.pending():
            return
        items, lines = self.spool.read()
        rows: list[_Row] = [tuple(item) for item in items]
        if self._insert(conn, rows):
            self.spool.remove(lines)
            self._report("replayed", len(rows))

    def _report(self, event: str, count: int, oldest: float | None = None) -> None:
        if self._events is not None:
            self._events.sink_event(event, count)
            if oldest is not None:
                self._events.set_sink_lag(max(0.0, time.time() - oldest))


_Row = tuple[str, float, str, str, int, str]


def _row(record: DecisionRecord) -> _Row:
    record = record.deidentified()
    return (
        record.request_id,
        record.created,
        record.tenant,
        record.action.value,
        int(record.flagged),
        orjson.dumps(record.to_json()).decode(),
    )


def read_records(path: Path, *, limit: int = 100) -> Iterator[dict[str, Any]]:
    """The newest records first, as dicts (for the CLI and tests)."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT record FROM records ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
    for (text,) in rows:
        yield orjson.loads(text)


class SQLiteRecords:
    """Records in the SQLite file by request id (its primary key)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def find(self, request_id: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            try:
                row = conn.execute(
                    "SELECT record FROM records WHERE request_id = ?", (request_id,)
                ).fetchone()
            except sqlite3.OperationalError:  # no records table yet
                return None
        record: dict[str, Any] | None = orjson.loads(row[0]) if row else None
        return record

    def close(self) -> None:
        pass
