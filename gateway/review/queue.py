"""The review queue's state, in the records' own SQLite file: items, labels, decisions, audit events.

`ReviewQueue` is the queue as reviewers and intake use it; `gateway.review.store.SqliteReviewStore` adds
what crosses its edges (exports for the trainer, imports, AI labels). The same queue in Redis, for
replicas that share one, is `gateway.review.redis_queue`.

An item is a flagged decision record that an intake rule let in (:mod:`gateway.review.intake`). Each is
labelled by ``labels_per_item`` reviewers: a label says what the right action was (allow, refuse,
redact, escalate, steer), in which category, and optionally the ideal answer and a ranking of candidate
answers (the model's regenerations, made once per item: :mod:`gateway.review.candidates`). When the
labels agree the item is decided; when they do not it waits for an adjudicator, whose decision is final
and carries a reason. Gold items (imported with a known answer) are mixed into each
reviewer's queue unannounced, every ``gold_every``-th item served, and measure accuracy. Every change is
an audit event (who, when, what) in the same transaction as the change itself.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import orjson

from gateway.review.agreement import summarise
from gateway.review.model import Label, ReviewError, Role, check_ranking, settle
from gateway.sinks.spool import create_private

__all__ = ["ReviewQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_items (
    request_id TEXT PRIMARY KEY,
    entered REAL NOT NULL,
    reason TEXT NOT NULL,
    priority INTEGER NOT NULL,
    category TEXT NOT NULL,
    language TEXT NOT NULL,
    tenant TEXT NOT NULL,
    record TEXT NOT NULL,
    gold TEXT,
    status TEXT NOT NULL DEFAULT 'open',
    final TEXT,
    candidates TEXT
);
CREATE INDEX IF NOT EXISTS review_items_queue ON review_items (status, priority DESC, entered);
CREATE TABLE IF NOT EXISTS review_labels (
    request_id TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    created REAL NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (request_id, reviewer)
);
CREATE TABLE IF NOT EXISTS review_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS review_roles (reviewer TEXT PRIMARY KEY, role TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS review_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS review_ai_labels (
    request_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    label TEXT NOT NULL,
    provenance TEXT NOT NULL,
    rejected_answer TEXT
);
"""


class ReviewQueue:
    def __init__(self, path: Path, *, labels_per_item: int = 2, gold_every: int = 10) -> None:
        self.path = path
        self.labels_per_item = labels_per_item
        self.gold_every = gold_every
        create_private(path)
        with self._tx() as conn:
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(review_items)")}
            if "candidates" not in columns:  # a file written before candidate answers existed
                conn.execute("ALTER TABLE review_items ADD COLUMN candidates TEXT")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                yield conn

    def close(self) -> None:
        """Nothing to release: each operation opens and closes its own connection."""

    @staticmethod
    def _audit(
        conn: sqlite3.Connection, actor: str, event: str, request_id: str | None, **detail: Any
    ) -> None:
        conn.execute(
            "INSERT INTO review_audit (at, actor, event, request_id, detail) VALUES (?,?,?,?,?)",
            (time.time(), actor, event, request_id, orjson.dumps(detail).decode()),
        )

    def log_event(self, actor: str, event: str, request_id: str | None = None, **detail: Any) -> None:
        """An audit event that changes nothing else (a login, an export)."""
        with self._tx() as conn:
            self._audit(conn, actor, event, request_id, **detail)

    # --- entering the queue ----------------------------------------------------------------------

    def enqueue(
        self,
        record: dict[str, Any],
        *,
        reason: str,
        priority: int,
        actor: str = "intake",
        gold: Label | None = None,
    ) -> bool:
        """Add a record as an item; False when it is already queued (a redelivered record)."""
        with self._tx() as conn:
            return self._enqueue(conn, record, reason=reason, priority=priority, actor=actor, gold=gold)

    def _enqueue(
        self,
        conn: sqlite3.Connection,
        record: dict[str, Any],
        *,
        reason: str,
        priority: int,
        actor: str,
        gold: Label | None,
    ) -> bool:
        categories = record.get("categories") or ["none"]
        cursor = conn.execute(
            "INSERT OR IGNORE INTO review_items (request_id, entered, reason, priority, category, language,"
            " tenant, record, gold) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                record["request_id"], time.time(), reason, priority, categories[0],
                record.get("language") or "und", record.get("tenant") or "default",
                orjson.dumps(record).decode(), gold.model_dump_json() if gold else None,
            ),
        )  # fmt: skip
        if cursor.rowcount:
            self._audit(conn, actor, "enqueued", record["request_id"], reason=reason, gold=gold is not None)
        return bool(cursor.rowcount)

    def report(self, request_id: str, record: dict[str, Any] | None, *, actor: str, reason: str) -> None:
        """A user's report: the item enters at the top (or moves there when already queued)."""
        with self._tx() as conn:
            moved = conn.execute(
                "UPDATE review_items SET priority = MAX(priority, 100) WHERE request_id = ?", (request_id,)
            ).rowcount
            if not moved:
                if record is None:
                    raise ReviewError(f"no decision record with request id {request_id!r}", 404)
                self._enqueue(conn, record, reason="user report", priority=100, actor=actor, gold=None)
            self._audit(conn, actor, "reported", request_id, reason=reason)

    def entered_today(self, reason: str, category: str, language: str) -> int:
        start = time.time() - time.time() % 86400
        with self._tx() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM review_items"
                " WHERE reason = ? AND category = ? AND language = ? AND entered >= ?",
                (reason, category, language, start),
            ).fetchone()
        return int(row[0])

    def cursor(self, name: str) -> str | None:
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM review_meta WHERE key = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_cursor(self, name: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO review_meta VALUES (?, ?)", (name, value))

    # --- reviewing -------------------------------------------------------------------------------

    def next_item(self, reviewer: str) -> dict[str, Any] | None:
        """The next item for ``reviewer``: a gold one every ``gold_every``-th time if one is left for them,
        else the open item of highest priority, oldest first, that they have not labelled."""
        with self._tx() as conn:
            key = f"served:{reviewer}"
            row = conn.execute("SELECT value FROM review_meta WHERE key = ?", (key,)).fetchone()
            served = int(row[0]) if row else 0
            unlabelled = (
                "NOT EXISTS (SELECT 1 FROM review_labels l"
                " WHERE l.request_id = i.request_id AND l.reviewer = ?)"
            )
            found = None
            if self.gold_every and served % self.gold_every == self.gold_every - 1:
                found = conn.execute(
                    f"SELECT request_id FROM review_items i WHERE gold IS NOT NULL AND {unlabelled}"
                    " ORDER BY entered LIMIT 1",
                    (reviewer,),
                ).fetchone()
            if found is None:
                found = conn.execute(
                    "SELECT request_id FROM review_items i"
                    f" WHERE status = 'open' AND gold IS NULL AND {unlabelled}"
                    " AND (SELECT COUNT(*) FROM review_labels l WHERE l.request_id = i.request_id) < ?"
                    " ORDER BY priority DESC, entered LIMIT 1",
                    (reviewer, self.labels_per_item),
                ).fetchone()
            if found is None:
                return None
            conn.execute("INSERT OR REPLACE INTO review_meta VALUES (?, ?)", (key, str(served + 1)))
        return self.item(found[0], reveal=False)

    def item(self, request_id: str, *, reveal: bool = True) -> dict[str, Any]:
        """An item as the API shows it; ``reveal=False`` hides what a reviewer must not see (whether it
        is gold, its answer, the other reviewers' labels)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT request_id, entered, reason, priority, category, language, tenant, record, gold,"
                " status, final, candidates FROM review_items WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            if row is None:
                raise ReviewError(f"no review item {request_id!r}", 404)
            labels = conn.execute(
                "SELECT reviewer, created, label FROM review_labels WHERE request_id = ? ORDER BY created",
                (request_id,),
            ).fetchall()
        item: dict[str, Any] = {
            "request_id": row[0], "entered": row[1], "reason": row[2], "priority": row[3],
            "category": row[4], "language": row[5], "tenant": row[6], "record": orjson.loads(row[7]),
            "status": "open" if row[8] else row[9], "candidates": orjson.loads(row[11] or "[]"),
        }  # fmt: skip
        if reveal:
            item["gold"] = orjson.loads(row[8]) if row[8] else None
            item["final"] = orjson.loads(row[10]) if row[10] else None
            item["labels"] = [{"reviewer": r, "created": c, **orjson.loads(x)} for r, c, x in labels]
        return item

    def label(self, reviewer: str, request_id: str, label: Label) -> dict[str, Any]:
        """Record ``reviewer``'s label; decides the item when enough labels agree, else sends it to
        adjudication. A reviewer may change their label while the item is still open."""
        with self._tx() as conn:
            status, gold, candidates = self._state(conn, request_id)
            if gold is None and status != "open":
                raise ReviewError(f"item {request_id!r} is already {status}", 409)
            check_ranking(label, candidates)
            old = conn.execute(
                "SELECT label FROM review_labels WHERE request_id = ? AND reviewer = ?",
                (request_id, reviewer),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO review_labels VALUES (?,?,?,?)",
                (request_id, reviewer, time.time(), label.model_dump_json()),
            )
            self._audit(conn, reviewer, "labelled", request_id, label=label.model_dump(mode="json"),
                        previous=orjson.loads(old[0]) if old else None)  # fmt: skip
            if gold is None:
                status = self._settle(conn, request_id)
        return {"request_id": request_id, "status": "open" if gold else status}

    def set_candidates(
        self, actor: str, request_id: str, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Keep the candidate answers of an item, once: every reviewer ranks the same ones. Returns the
        item's candidates (those already there, unchanged, when another reviewer made them first)."""
        with self._tx() as conn:
            status, gold, stored = self._state(conn, request_id)
            if stored:
                return stored
            if gold is None and status == "done":
                raise ReviewError(f"item {request_id!r} is already done", 409)
            conn.execute(
                "UPDATE review_items SET candidates = ? WHERE request_id = ?",
                (orjson.dumps(candidates).decode(), request_id),
            )
            self._audit(conn, actor, "candidates generated", request_id, n=len(candidates),
                        models=sorted({str(c.get("model", "")) for c in candidates}))  # fmt: skip
        return candidates

    @staticmethod
    def _state(conn: sqlite3.Connection, request_id: str) -> tuple[str, str | None, list[dict[str, Any]]]:
        """An item's status, gold answer (JSON) and candidate answers; a 404 when there is no such item."""
        row = conn.execute(
            "SELECT status, gold, candidates FROM review_items WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            raise ReviewError(f"no review item {request_id!r}", 404)
        return row[0], row[1], orjson.loads(row[2] or "[]")

    def _settle(self, conn: sqlite3.Connection, request_id: str) -> str:
        labels = [
            Label.model_validate_json(x)
            for (x,) in conn.execute("SELECT label FROM review_labels WHERE request_id = ?", (request_id,))
        ]
        settled = settle(labels, self.labels_per_item)
        if settled.final is not None:
            conn.execute(
                "UPDATE review_items SET status = 'done', final = ? WHERE request_id = ?",
                (settled.final.model_dump_json(), request_id),
            )
            self._audit(conn, "review", "decided", request_id, final=settled.final.model_dump(mode="json"))
        elif settled.status == "adjudication":
            conn.execute(
                "UPDATE review_items SET status = 'adjudication' WHERE request_id = ?", (request_id,)
            )
            self._audit(conn, "review", "disputed", request_id, labels=[x.key() for x in labels])
        return settled.status

    def disputed(self) -> list[dict[str, Any]]:
        with self._tx() as conn:
            ids = [r for (r,) in conn.execute(
                "SELECT request_id FROM review_items WHERE status = 'adjudication'"
                " ORDER BY priority DESC, entered"
            )]  # fmt: skip
        return [self.item(i) for i in ids]

    def adjudicate(self, adjudicator: str, request_id: str, decision: Label) -> dict[str, Any]:
        if not decision.reason:
            raise ReviewError("an adjudication needs a reason", 400)
        with self._tx() as conn:
            status, _, candidates = self._state(conn, request_id)
            if status != "adjudication":
                raise ReviewError(f"item {request_id!r} is {status}, not waiting for adjudication", 409)
            check_ranking(decision, candidates)
            conn.execute(
                "UPDATE review_items SET status = 'done', final = ? WHERE request_id = ?",
                (decision.model_dump_json(), request_id),
            )
            self._audit(conn, adjudicator, "adjudicated", request_id, final=decision.model_dump(mode="json"))
        return {"request_id": request_id, "status": "done"}

    # --- roles -----------------------------------------------------------------------------------

    def role_overrides(self) -> dict[str, Role]:
        with self._tx() as conn:
            return {name: role for name, role in conn.execute("SELECT reviewer, role FROM review_roles")}

    def set_role(self, admin: str, reviewer: str, role: Role) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO review_roles VALUES (?, ?)", (reviewer, role))
            self._audit(conn, admin, "role changed", None, reviewer=reviewer, role=role)

    def audit(self, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        where, args = ("WHERE request_id = ?", (request_id, limit)) if request_id else ("", (limit,))
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT at, actor, event, request_id, detail FROM review_audit"
                f" {where} ORDER BY id DESC LIMIT ?",
                args,
            ).fetchall()
        return [
            {"at": a, "actor": b, "event": c, "request_id": d, **orjson.loads(e)} for a, b, c, d, e in rows
        ]

    # --- agreement -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Queue counts and agreement (:func:`gateway.review.agreement.summarise`)."""
        with self._tx() as conn:
            items = conn.execute("SELECT request_id, category, gold, status FROM review_items").fetchall()
            labels = conn.execute("SELECT request_id, reviewer, label FROM review_labels").fetchall()
        decoded = [(r, reviewer, Label.model_validate_json(text)) for r, reviewer, text in labels]
        gold = {r: Label.model_validate_json(g).key() for r, _, g, _ in items if g}
        rows = [(r, category, r in gold, status) for r, category, _, status in items]
        return summarise(
            rows, [(r, name, label.key()) for r, name, label in decoded], gold, self.labels_per_item
        )

    def backlog(self) -> int:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM review_items WHERE gold IS NULL AND status != 'done'"
            ).fetchone()
        return int(row[0])
