"""The review store in Redis: the queue (`gateway.review.redis_queue`) and what crosses its edges, as
`gateway.review.store.SqliteReviewStore` does it in SQLite: exports for the trainer, JSONL imports (every
line checked, then all written in one MULTI/EXEC), and AI labels beside the open items, in the hash
``ai`` (request id -> {"created", "label", "provenance", "rejected_answer"}).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from gateway.review.model import Label, ReviewError, check_ranking
from gateway.review.redis_client import CHUNK, Pipeline, answering, answers, request_id_of, stored_labels
from gateway.review.redis_queue import RedisReviewQueue
from gateway.review.transfer import parse_import

__all__ = ["RedisReviewStore"]


class RedisReviewStore(RedisReviewQueue):
    # --- export and import -----------------------------------------------------------------------

    def export(self, *, include_ai: bool = False) -> Iterator[dict[str, Any]]:
        """Decided items, oldest first: the record, the final label, every label (for the trainer).
        With ``include_ai``, also the items no person has decided that carry an AI label: their
        ``final`` is that label with its provenance under ``ai`` (a person's decision always wins)."""
        with answering():
            chosen = []
            start = 0
            while ids := self._client.zrange(self.keys.items, start, start + CHUNK - 1):
                with self._client.pipeline(transaction=False) as pipe:
                    for request_id in ids:
                        pipe.hmget(self.keys.item(request_id), ["status", "gold"])
                        pipe.hexists(self.keys.ai, request_id)
                    replies = pipe.execute()
                for n, request_id in enumerate(ids):
                    (status, gold), has_ai = replies[2 * n], replies[2 * n + 1]
                    if gold is None and (status == "done" or (include_ai and status == "open" and has_ai)):
                        chosen.append(request_id)
                start += CHUNK
            for request_id in chosen:
                item = self.item(request_id)
                if item["status"] != "done":
                    item["final"] = self.ai_label(request_id)
                yield item

    def import_lines(self, lines: Iterable[str], *, actor: str) -> dict[str, int]:
        """JSONL, each line ``{"type": "label", "request_id", "reviewer", "label": {...}}`` or
        ``{"type": "gold", "record": {...}, "answer": {...}}``. Every line is checked before anything is
        written, and all are written in one transaction: a bad line imports nothing."""
        parsed = parse_import(lines)
        labelled = sorted({value[0] for kind, value in parsed if kind == "label"})
        golds = {value[0]["request_id"] for kind, value in parsed if kind == "gold"}
        ids = sorted(golds | set(labelled))
        watched = [self.keys.item(r) for r in ids] + [self.keys.labels(r) for r in labelled]

        def write(pipe: Pipeline) -> dict[str, int]:
            items: dict[str, dict[str, str]] = {r: pipe.hgetall(self.keys.item(r)) for r in ids}
            stored: dict[str, dict[str, str]] = {r: pipe.hgetall(self.keys.labels(r)) for r in labelled}
            known = {r for r, fields in items.items() if fields}
            new_golds: list[tuple[dict[str, Any], Label]] = []
            for kind, value in parsed:  # in order: a label may follow the gold item it is for
                if kind == "gold":
                    if value[0]["request_id"] not in known:
                        new_golds.append(value)
                        known.add(value[0]["request_id"])
                elif value[0] not in known:
                    raise ReviewError(f"a label for {value[0]!r}, which is not in the queue")
                else:
                    check_ranking(value[2], orjson.loads(items.get(value[0], {}).get("candidates", "[]")))
            first = int(pipe.incrby(self.keys.seq, len(new_golds))) - len(new_golds) + 1 if new_golds else 0
            pipe.multi()
            for n, (record, answer) in enumerate(new_golds):
                self._add_item(pipe, record, first + n, reason="gold", priority=0, actor=actor, gold=answer)
            counts = {"label": 0, "gold": sum(kind == "gold" for kind, _ in parsed)}
            for kind, value in parsed:
                if kind != "label":
                    continue
                request_id, reviewer, label = value
                entry = orjson.dumps(
                    {"created": time.time(), "label": label.model_dump(mode="json")}
                ).decode()
                pipe.hset(self.keys.labels(request_id), reviewer, entry)
                stored[request_id][reviewer] = entry
                self._audit(pipe, actor, "imported label", request_id, reviewer=reviewer)
                counts["label"] += 1
            for request_id in labelled:
                fields = items[request_id]
                if fields and fields["status"] == "open" and "gold" not in fields:
                    self._settle(pipe, fields, [x for _, _, x in stored_labels(stored[request_id])])
            return counts

        with answering():  # after the lines are read: a file that cannot be read is not Redis's fault
            return self._transaction(write, *watched)

    # --- AI labels ---------------------------------------------------------------------------------

    @answers
    def needs_ai_label(self, limit: int) -> list[dict[str, Any]]:
        """Open items that no person has labelled and no AI has either, most urgent first."""
        found: list[str] = []
        start = 0
        while len(found) < limit and (
            members := self._client.zrange(self.keys.open, start, start + CHUNK - 1)
        ):
            ids = [request_id_of(m) for m in members]
            with self._client.pipeline(transaction=False) as pipe:
                for request_id in ids:
                    pipe.exists(self.keys.labels(request_id))
                    pipe.hexists(self.keys.ai, request_id)
                replies = pipe.execute()
            found += [r for n, r in enumerate(ids) if not replies[2 * n] and not replies[2 * n + 1]]
            start += CHUNK
        return [self.item(r) for r in found[:limit]]

    @answers
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
        item_key = self.keys.item(request_id)

        def write(pipe: Pipeline) -> None:
            fields: dict[str, str] = pipe.hgetall(item_key)
            if not fields or "gold" in fields:
                raise ReviewError(f"no review item {request_id!r}", 404)
            pipe.multi()
            value = {"created": time.time(), "label": label.model_dump(mode="json"), "provenance": provenance,
                     "rejected_answer": rejected_answer}  # fmt: skip
            pipe.hset(self.keys.ai, request_id, orjson.dumps(value).decode())
            actor = f"ai:{provenance.get('teacher', 'unknown')}"
            self._audit(pipe, actor, "ai labelled", request_id, label=label.model_dump(mode="json"))
            if spot_check:
                self._set_priority(pipe, fields, int(fields["priority"]) + 100)
                self._audit(pipe, actor, "sent for spot check", request_id)

        self._transaction(write, item_key)

    @answers
    def ai_label(self, request_id: str) -> dict[str, Any] | None:
        """The AI's label as a final decision: the label's fields, ``ai`` (its provenance) and
        ``rejected_answer`` (the model's own answer it replaces), or None."""
        raw = self._client.hget(self.keys.ai, request_id)
        if raw is None:
            return None
        value = orjson.loads(raw)
        return {**value["label"], "ai": value["provenance"], "rejected_answer": value["rejected_answer"]}
