"""The review queue as the gateway runs it: the store (SQLite, or Redis when the records go there), the
reviewers, and intake polling in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol

from gateway.review.auth import Reviewers
from gateway.review.intake import Intake, StreamIntake
from gateway.review.store import ReviewStore, open_review_store
from gateway.settings import Settings
from gateway.sinks.base import RecordLookup
from gateway.sinks.sqlite import SQLiteRecords

log = logging.getLogger(__name__)


class BacklogGauge(Protocol):
    def set_review_backlog(self, n: int) -> None: ...


class ReviewService:
    def __init__(self, settings: Settings, gauge: BacklogGauge | None = None) -> None:
        review = settings.review
        self.records_db: Path = settings.sink_path
        self.store: ReviewStore = open_review_store(settings)
        self.reviewers = Reviewers(review.reviewers, self.store, settings.keys_path)
        self.intake = Intake(self.store, review.rules)
        self._stream: StreamIntake | None = None
        self._redis: tuple[str, str] | None = None
        self.records: RecordLookup = SQLiteRecords(self.records_db)
        if settings.sink_kind == "redis":
            from gateway.sinks.redis import StreamRecords

            assert settings.redis_url is not None
            self._redis = (settings.redis_url, settings.sink.stream)
            self.records = StreamRecords(settings.redis_url, stream=settings.sink.stream)
        self._poll_s = review.poll_s
        self._reclaim_after_s = review.reclaim_after_s
        self._gauge = gauge
        self._task: asyncio.Task[None] | None = None

    def poll_once(self) -> int:
        """Offer the records written since the last poll to the queue (blocking; call off the loop)."""
        if self._redis is not None:
            if self._stream is None:
                self._stream = StreamIntake(self.intake, *self._redis, reclaim_after_s=self._reclaim_after_s)
            read = self._stream.poll()
        else:
            read = self.intake.from_sqlite(self.records_db)
        if self._gauge is not None:
            self._gauge.set_review_backlog(self.store.backlog())
        return read

    def find_record(self, request_id: str) -> dict[str, Any] | None:
        """The stored record of a request, where the sink wrote it (blocking; call off the loop). A Redis
        that does not answer is a 503 (`ReviewUnavailableError`), as for the queue."""
        if self._redis is None:
            return self.records.find(request_id)
        from gateway.review.redis_client import answering

        with answering():
            return self.records.find(request_id)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="railguard-review-intake")

    async def _run(self) -> None:
        while True:
            try:
                while await asyncio.to_thread(self.poll_once):
                    pass  # a backlog: read on until it is drained
            except Exception as exc:  # Redis down, a locked file: try again at the next poll
                log.warning("review intake: %s", exc)
                self._stream = None
            await asyncio.sleep(self._poll_s)

    def close(self) -> None:
        """Close the Redis connections the intake and the store hold (the background task, if any, is
        not touched)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.records.close()
        self.store.close()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.close()
