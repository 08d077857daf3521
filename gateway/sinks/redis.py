"""Decision records to a Redis Stream, with nothing lost when Redis is down.

The request path never waits on Redis: ``submit`` puts the record on a bounded in-process queue and a
background thread sends what has accumulated in one round trip. When Redis is down or slow, or the
queue is full, records go to an append-only spool file (:mod:`gateway.sinks.spool`) and are replayed
in order once Redis answers again, or at the next start. While anything is spooled, new records join
the spool behind it, so the stream keeps the order in which requests finished.

Every record is added by a small Lua script that first checks its request id's claim key and, for a
new one, adds the entry and keeps its stream entry id under that key (with a TTL): a replay, a retry
after a timeout whose reply was lost, or a second gateway replaying the same spool never adds a record
twice, and a record is found by request id without a scan (:class:`StreamRecords`). Readers use a
consumer group (:class:`RecordReader`) and acknowledge only what they stored.

Stream entries have two fields: ``id`` (the request id) and ``record`` (the record's JSON, schema in
``docs/records.md``), de-identified unless the tenant's policy keeps raw text.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.records import DecisionRecord
from gateway.sinks.base import SinkEvents
from gateway.sinks.spool import Spool

log = logging.getLogger(__name__)

# KEYS[1]: the stream; KEYS[2]: the prefix of the request-id claims (same hash tag: one cluster slot).
# ARGV: maxlen, claim TTL in seconds, then (request id, record JSON) pairs. Returns how many were new.
# A claim holds the record's entry id (the script runs atomically: nothing comes between check and add).
_ADD = """
local added = 0
for i = 3, #ARGV, 2 do
  local claim = KEYS[2] .. ARGV[i]
  if redis.call('EXISTS', claim) == 0 then
    local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'id', ARGV[i], 'record', ARGV[i + 1])
    redis.call('SET', claim, id, 'EX', ARGV[2])
    added = added + 1
  end
end
return added
"""
_ENTRY_ID = re.compile(r"\d+-\d+")
_STOP = object()
_BATCH = 500


def sampled(request_id: str, rate: float) -> bool:
    """Deterministic sampling by request id: the same record is in or out on every replica."""
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


class RedisStreamSink:
    def __init__(
        self,
        url: str,
        *,
        stream: str,
        spool_path: Path,
        maxlen: int = 1_000_000,
        flagged_only: bool = True,
        sample_unflagged: float = 0.0,
        queue_size: int = 10_000,
        claim_ttl_s: int = 7 * 24 * 3600,
        timeout_s: float = 2.0,
        events: SinkEvents | None = None,
    ) -> None:
        import redis

        self.stream = stream
        self.flagged_only = flagged_only
        self.sample_unflagged = sample_unflagged
        self.spool = Spool(spool_path)
        self._maxlen = maxlen
        self._claim_ttl_s = claim_ttl_s
        self._events = events
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._add = self._client.register_script(_ADD)
        self._errors = (redis.RedisError, OSError)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._retry_s = 0.2
        self._writer = threading.Thread(target=self._run, name="railguard-redis-sink", daemon=True)
        self._writer.start()

    # --- the request path -------------------------------------------------------------------------

    def submit(self, record: DecisionRecord) -> None:
        if self.flagged_only and not record.flagged and not sampled(record.request_id, self.sample_unflagged):
            return
        try:
            self._queue.put_nowait(record)
            self._report("queued", 1)
        except queue.Full:  # Redis slower than traffic: to disk, not lost
            self._to_spool([_entry(record)], sync=False)

    def close(self) -> None:
        """Send what is queued (or spool it when Redis does not answer), then stop."""
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join()
        self._client.close()

    # --- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        next_try = 0.0
        stopping = False
        while not stopping:
            wait = max(0.0, next_try - time.monotonic()) if self.spool.pending() else None
            batch = self._take(wait)
            stopping = any(item is _STOP for item in batch)
            records = [item for item in batch if item is not _STOP]
            if records:
                entries = [_entry(r) for r in records]
                oldest = min(r.created for r in records)
                if self.spool.pending() or not self._send(entries):
                    self._to_spool(entries)  # behind what is already waiting: order kept
                else:
                    self._report("written", len(entries), oldest)
            if self.spool.pending() and (stopping or time.monotonic() >= next_try):
                if self._replay():
                    self._retry_s = 0.2
                else:
                    next_try = time.monotonic() + self._retry_s
                    self._retry_s = min(self._retry_s * 2, 5.0)

    def _to_spool(self, entries: list[list[str]], *, sync: bool = True) -> None:
        try:
            self.spool.append(entries, sync=sync)
        except OSError as exc:  # disk full or unwritable: the one case in which records are lost
            log.error("redis sink: dropped %d records, the spool %s is unwritable: %s",
                      len(entries), self.spool.path, exc)  # fmt: skip
            self._report("dropped", len(entries))
        else:
            self._report("spooled", len(entries))

    def _take(self, wait: float | None) -> list[Any]:
        """What the queue holds: blocks for the first item (up to ``wait`` seconds when given)."""
        try:
            batch = [self._queue.get(timeout=wait) if wait is not None else self._queue.get()]
        except queue.Empty:
            return []
        while len(batch) < _BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _send(self, entries: list[list[str]]) -> bool:
        args: list[Any] = [self._maxlen, self._claim_ttl_s]
        for request_id, record in entries:
            args += [request_id, record]
        try:
            self._add(keys=[self.stream, claim_prefix(self.stream)], args=args)
        except self._errors as exc:
            log.warning("redis sink: cannot write %d records (%s); spooling", len(entries), exc)
            return False
        return True

    def _replay(self) -> bool:
        """Send the spool, oldest first, in batches; True when it is empty afterwards."""
        items, lines = self.spool.read()
        sent = 0
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            if not self._send(chunk):
                break
            sent += len(chunk)
        if sent == len(items):
            self.spool.remove(lines)
            if sent:
                log.info("redis sink: replayed %d spooled records", sent)
                self._report("replayed", sent)
            return True
        return False  # kept whole: what was sent is not added twice on the next try

    def _report(self, event: str, count: int, oldest: float | None = None) -> None:
        if self._events is not None:
            self._events.sink_event(event, count)
            if oldest is not None:
                self._events.set_sink_lag(max(0.0, time.time() - oldest))


def claim_prefix(stream: str) -> str:
    """The prefix of the stream's request-id claims: ``{prefix}{request id}`` holds the entry id."""
    return f"{stream}:seen:"


def _entry(record: DecisionRecord) -> list[str]:
    return [record.request_id, orjson.dumps(record.deidentified().to_json()).decode()]


class RecordReader:
    """Reads the stream through a consumer group: :meth:`read` returns this consumer's unacknowledged
    entries first (redelivered after a crash), then new ones; :meth:`claim` takes over the entries that
    another consumer read and left unacknowledged (it died); :meth:`ack` after they are stored."""

    def __init__(self, url: str, *, stream: str, group: str, consumer: str, timeout_s: float = 5.0) -> None:
        import redis

        self.stream, self.group, self.consumer = stream, group, consumer
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            self._client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._claim_from = "0-0"

    def read(self, count: int = 100, block_ms: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """[(entry id, record)], at most ``count``."""
        for start in ("0", ">"):  # pending (delivered, never acknowledged) first
            reply: Any = self._client.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=count,
                block=block_ms if start == ">" else None,
            )  # fmt: skip
            entries = [
                (_text(eid), orjson.loads(fields[b"record"]))
                for _, messages in reply or []
                for eid, fields in messages
                if fields  # an entry trimmed away while pending comes back empty
            ]
            if entries:
                return entries
        return []

    def claim(self, min_idle_ms: int, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """[(entry id, record)] that any consumer of the group read but has not acknowledged for
        ``min_idle_ms`` (XAUTOCLAIM): now this consumer's, to store and acknowledge as its own. Each
        call goes on through the group's pending entries from where the last one stopped."""
        reply: Any = self._client.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, start_id=self._claim_from, count=count
        )
        self._claim_from = _text(reply[0])
        entries, trimmed = [], []
        for eid, fields in reply[1]:
            if fields:
                entries.append((_text(eid), orjson.loads(fields[b"record"])))
            elif eid is not None:  # trimmed away while pending (Redis 7 drops those from the list itself)
                trimmed.append(_text(eid))
        self.ack(trimmed)
        return entries

    def ack(self, entry_ids: list[str]) -> int:
        return int(self._client.xack(self.stream, self.group, *entry_ids)) if entry_ids else 0

    def close(self) -> None:
        self._client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StreamRecords:
    """Records in the stream by request id (a user's report on a request the review queue has not
    taken): the entry id from the request id's claim, then that one entry (``XRANGE id id``). A request
    id that was never recorded, whose claim expired, or whose entry the stream's MAXLEN trimmed away is
    not found. Redis errors are raised to the caller."""

    def __init__(self, url: str, *, stream: str, timeout_s: float = 2.0) -> None:
        import redis

        self.stream = stream
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def find(self, request_id: str) -> dict[str, Any] | None:
        raw: Any = self._client.get(claim_prefix(self.stream) + request_id)
        entry_id = _text(raw) if raw is not None else None
        if entry_id is None or not _ENTRY_ID.fullmatch(entry_id):  # a claim of an older gateway holds "1"
            return None
        entries: Any = self._client.xrange(self.stream, min=entry_id, max=entry_id, count=1)
        if not entries or not entries[0][1]:
            return None
        record: dict[str, Any] = orjson.loads(entries[0][1][b"record"])
        return record

    def close(self) -> None:
        self._client.close()
