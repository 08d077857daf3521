"""The review store: the queue (`gateway.review.queue`) and what crosses its edges. Decided items leave
as exports for the trainer (with AI labels when asked), labels and gold items arrive as JSONL imports,
and an AI's labels (`railguard label`) wait beside the open items they are for, which people still
decide: a person's decision always wins.

`open_review_store` picks the store the settings ask for: this SQLite one beside the records, or
`gateway.review.redis_store.RedisReviewStore` when the records go to Redis (one queue for every replica).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from gateway.review.base import ReviewStore
from gateway.review.model import ROLES, Label, ReviewError, Role, check_ranking
from gateway.review.queue import ReviewQueue
from gateway.review.transfer import parse_import

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "ROLES",
    "Label",
    "ReviewError",
    "ReviewQueue",
    "ReviewStore",
    "Role",
    "SqliteReviewStore",
    "open_review_store",
]


def open_review_store(settings: Settings) -> ReviewStore:
    """The review state in the same database as the records: Redis when the sink writes there, else the
    records' SQLite file. Opening a Redis store does not connect (a Redis that is down is met per call)."""
    review = settings.review
    if settings.sink_kind == "redis":
        from gateway.review.redis_store import RedisReviewStore

        assert settings.redis_url is not None
        return RedisReviewStore(
            settings.redis_url,
            prefix=review.redis_prefix,
            labels_per_item=review.labels_per_item,
            gold_every=review.gold_every,
        )
    return SqliteReviewStore(
        settings.sink_path, labels_per_item=review.labels_per_item, gold_every=review.gold_every
    )


class SqliteReviewStore(ReviewQueue):
    # --- export and import -----------------------------------------------------------------------

    def export(self, *, include_ai: bool = False) -> Iterator[dict[str, Any]]:
        """Decided items, oldest first: the record, the final label, every label (for the trainer).
        With ``include_ai``, also the items no person has decided that carry an AI label: their
        ``final`` is that label with its provenance under ``ai`` (a person's decision always wins)."""
        with self._tx() as conn:
            ids = [r for (r,) in conn.execute(
                "SELECT request_id FROM review_items WHERE gold IS NULL AND (status = 'done' OR"
                " (? AND status = 'open' AND request_id IN (SELECT request_id FROM review_ai_labels)))"
                " ORDER BY entered",
                (include_ai,),
            )]  # fmt: skip
        for request_id in ids:
            item = self.item(request_id)
            if item["status"] != "done":
                item["final"] = self.ai_label(request_id)
            yield item

    # --- AI labels ---------------------------------------------------------------------------------

    def needs_ai_label(self, limit: int) -> list[dict[str, Any]]:
        """Open items that no person has labelled and no AI has either, most urgent first."""
        with self._tx() as conn:
            ids = [r for (r,) in conn.execute(
                "SELECT request_id FROM review_items WHERE gold IS NULL AND status = 'open'"
                " AND request_id NOT IN (SELECT request_id FROM review_labels)"
                " AND request_id NOT IN (SELECT request_id FROM review_ai_labels)"
                " ORDER BY priority DESC, entered LIMIT ?",
                (limit,),
            )]  # fmt: skip
        return [self.item(r) for r in ids]

    def add_ai_label(
        self,
        request_id: str,
        label: Label,
        provenance: dict[str, Any],
        *,
        rejected_answer: str | None = None,
        spot_check: bool = False,
    ) -> None:
        """Keep an AI's label beside the item (which stays open for people). ``spot_check`` moves the
        item to the top of the queue so that a person checks the AI's work soon."""
        with self._tx() as conn:
            if (
                conn.execute(
                    "SELECT 1 FROM review_items WHERE request_id = ? AND gold IS NULL", (request_id,)
                ).fetchone()
                is None
            ):
                raise ReviewError(f"no review item {request_id!r}", 404)
            conn.execute(
                "INSERT OR REPLACE INTO review_ai_labels VALUES (?,?,?,?,?)",
                (request_id, time.time(), label.model_dump_json(), orjson.dumps(provenance).decode(),
                 rejected_answer),
            )  # fmt: skip
            actor = f"ai:{provenance.get('teacher', 'unknown')}"
            self._audit(conn, actor, "ai labelled", request_id, label=label.model_dump(mode="json"))
            if spot_check:
                conn.execute(
                    "UPDATE review_items SET priority = priority + 100 WHERE request_id = ?", (request_id,)
                )
                self._audit(conn, actor, "sent for spot check", request_id)

    def ai_label(self, request_id: str) -> dict[str, Any] | None:
        """The AI's label as a final decision: the label's fields, ``ai`` (its provenance) and
        ``rejected_answer`` (the model's own answer it replaces), or None."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT label, provenance, rejected_answer FROM review_ai_labels WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        if row is None:
            return None
        return {**orjson.loads(row[0]), "ai": orjson.loads(row[1]), "rejected_answer": row[2]}

    def import_lines(self, lines: Iterable[str], *, actor: str) -> dict[str, int]:
        """JSONL, each line ``{"type": "label", "request_id", "reviewer", "label": {...}}`` or
        ``{"type": "gold", "record": {...}, "answer": {...}}``. Every line is checked before anything is
        written, and all are written in one transaction: a bad line imports nothing."""
        parsed = parse_import(lines)
        counts = {"label": 0, "gold": 0}
        with self._tx() as conn:
            known = dict(conn.execute("SELECT request_id, candidates FROM review_items").fetchall())
            for kind, value in parsed:
                if kind == "gold":
                    record, answer = value
                    self._enqueue(conn, record, reason="gold", priority=0, actor=actor, gold=answer)
                    known.setdefault(record["request_id"], None)
                else:
                    request_id, reviewer, label = value
                    if request_id not in known:
                        raise ReviewError(f"a label for {request_id!r}, which is not in the queue")
                    check_ranking(label, orjson.loads(known[request_id] or "[]"))
                    conn.execute(
                        "INSERT OR REPLACE INTO review_labels VALUES (?,?,?,?)",
                        (request_id, reviewer, time.time(), label.model_dump_json()),
                    )
                    self._audit(conn, actor, "imported label", request_id, reviewer=reviewer)
                counts[kind] += 1
            for request_id in {v[0] for k, v in parsed if k == "label"}:
                if conn.execute(
                    "SELECT 1 FROM review_items WHERE request_id = ? AND status = 'open' AND gold IS NULL",
                    (request_id,),
                ).fetchone():
                    self._settle(conn, request_id)
        return counts
