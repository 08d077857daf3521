"""Review stores for tests, on either backend: the records' SQLite file, or a real Redis."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from gateway.review.store import ReviewStore, SqliteReviewStore


class Stores:
    """Stores of one kind over one state (a SQLite file, or a key prefix of its own in Redis)."""

    def __init__(self, kind: str, tmp_path: Path, redis_url: str | None) -> None:
        self.kind, self.path, self.redis_url = kind, tmp_path / "records.sqlite3", redis_url
        self.prefix = f"{{test-{uuid.uuid4().hex[:12]}}}:review:"
        self.opened: list[ReviewStore] = []

    def __call__(self, **kw: Any) -> ReviewStore:
        store: ReviewStore
        if self.redis_url is None:
            store = SqliteReviewStore(self.path, **kw)
        else:
            from gateway.review.redis_store import RedisReviewStore

            store = RedisReviewStore(self.redis_url, prefix=self.prefix, **kw)
        self.opened.append(store)
        return store

    def settings_yaml(self) -> str:
        """What a settings file says to use this state."""
        if self.redis_url is None:
            return f"sink: {{path: {self.path}}}\n"
        return f"redis_url: {self.redis_url}\nreview: {{redis_prefix: '{self.prefix}'}}\n"
