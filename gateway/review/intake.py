"""Which flagged records enter the review queue, and how they get there.

Rules are tried in order; the first that matches a record enqueues it with its priority, unless its
daily quota for that category and language is used up. A record no rule matches is not reviewed.
Records come from the store the sink writes: new rows of the SQLite records table (a cursor in the
review tables), or the Redis Stream through a consumer group (acknowledged once enqueued, so a crash
between the two only redelivers, to the same replica or, after a while, to another that claims them;
enqueueing is idempotent by request id).
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from gateway.policy.verdict import Action
from gateway.review.base import ReviewStore

log = logging.getLogger(__name__)


class IntakeRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    actions: list[Action] = Field(default_factory=list, description="Any of these actions; empty: any")
    categories: list[str] = Field(default_factory=list, description="Any of these categories; empty: any")
    languages: list[str] = Field(default_factory=list, description="Any of these languages; empty: any")
    min_score: float = Field(0.0, ge=0, le=1, description="The record's highest category score at least")
    max_score: float = Field(1.0, ge=0, le=1, description="... and at most (a score band)")
    disagreement: bool = Field(False, description="Only records whose input and output guards disagree")
    priority: int = 0
    daily_quota: int | None = Field(None, ge=0, description="Items per category and language per day")

    def matches(self, record: dict[str, Any]) -> bool:
        categories = record.get("categories") or ["none"]
        if self.actions and record.get("action") not in {a.value for a in self.actions}:
            return False
        if self.categories and not set(categories) & set(self.categories):
            return False
        if self.languages and record.get("language") not in self.languages:
            return False
        score = max_score(record)
        if not self.min_score <= score <= self.max_score:
            return False
        return not self.disagreement or guards_disagree(record)


DEFAULT_RULES = (
    IntakeRule(name="escalated", actions=[Action.ESCALATE], priority=30),
    IntakeRule(name="guards disagree", disagreement=True, priority=20),
    IntakeRule(name="refused", actions=[Action.REFUSE], priority=10),
    IntakeRule(name="flagged", priority=0),
)


def max_score(record: dict[str, Any]) -> float:
    scores = [
        float(v)
        for stage in ("input", "output")
        for v in ((record.get(stage) or {}).get("scores") or {}).values()
        if isinstance(v, int | float)
    ]
    return max(scores, default=0.0)


def guards_disagree(record: dict[str, Any]) -> bool:
    """The prompt was allowed but the answer was not (or the other way round), or a guard failed."""
    stages = [record.get("input"), record.get("output")]
    if any(s and s.get("failed_guards") for s in stages):
        return True
    if stages[0] and stages[1]:
        return bool((stages[0].get("action") == "allow") != (stages[1].get("action") == "allow"))
    return False


class Intake:
    def __init__(
        self, store: ReviewStore, rules: tuple[IntakeRule, ...] | list[IntakeRule] = DEFAULT_RULES
    ) -> None:
        self.store = store
        self.rules = tuple(rules)

    def offer(self, record: dict[str, Any]) -> bool:
        """Enqueue ``record`` if a rule takes it; True when it entered the queue now."""
        if not record.get("flagged"):
            return False
        for rule in self.rules:
            if rule.matches(record):
                if rule.daily_quota is not None:
                    category = (record.get("categories") or ["none"])[0]
                    used = self.store.entered_today(rule.name, category, record.get("language") or "und")
                    if used >= rule.daily_quota:
                        return False
                return self.store.enqueue(record, reason=rule.name, priority=rule.priority)
        return False

    def from_sqlite(self, records_db: Path, batch: int = 500) -> int:
        """Offer the records written since the last call; returns how many were read."""
        if not records_db.exists():
            return 0
        cursor = int(self.store.cursor("sqlite") or 0)
        with closing(sqlite3.connect(records_db, timeout=30)) as conn:
            try:
                rows = conn.execute(
                    "SELECT rowid, record FROM records WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (cursor, batch),
                ).fetchall()
            except sqlite3.OperationalError:  # no records table yet
                return 0
        for _, text in rows:
            self.offer(orjson.loads(text))
        if rows:
            self.store.set_cursor("sqlite", str(rows[-1][0]))
        return len(rows)


class StreamIntake:
    """The Redis Stream's records, through the consumer group ``review`` (one consumer per replica, by
    hostname). Records that another replica read but did not acknowledge for ``reclaim_after_s`` (it
    died between reading and acknowledging) are taken over before new ones are read."""

    def __init__(
        self,
        intake: Intake,
        url: str,
        stream: str,
        *,
        consumer: str | None = None,
        reclaim_after_s: float = 60.0,
    ) -> None:
        from gateway.sinks.redis import RecordReader

        self.intake = intake
        self.reader = RecordReader(
            url, stream=stream, group="review", consumer=consumer or socket.gethostname()
        )
        self._reclaim_ms = max(1, round(reclaim_after_s * 1000))

    def poll(self, count: int = 500) -> int:
        """Offer a batch (another replica's abandoned records first, then this one's unacknowledged,
        then new ones) and acknowledge it; returns how many were read."""
        entries = self.reader.claim(self._reclaim_ms, count=count) or self.reader.read(count=count)
        for _, record in entries:
            self.intake.offer(record)
        self.reader.ack([entry_id for entry_id, _ in entries])
        return len(entries)

    def close(self) -> None:
        self.reader.close()
