"""The review queue's state in Redis, so that every gateway replica pointed at one Redis serves one queue.

The same queue as `gateway.review.queue` (SQLite), with the same decisions (`gateway.review.model.settle`
is shared); the key layout and the transaction that every change goes through are in
`gateway.review.redis_client`. `gateway.review.redis_store` adds what crosses the queue's edges.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from gateway.review.agreement import summarise
from gateway.review.model import Label, ReviewError, Role, check_ranking, settle
from gateway.review.redis_client import (
    CHUNK,
    DAY_S,
    Pipeline,
    RedisState,
    answers,
    request_id_of,
    stored_labels,
)

__all__ = ["RedisReviewQueue"]


class RedisReviewQueue(RedisState):
    """The queue as reviewers and intake use it."""

    @answers
    def log_event(self, actor: str, event: str, request_id: str | None = None, **detail: Any) -> None:
        """An audit event that changes nothing else (a login, an export)."""
        with self._client.pipeline(transaction=True) as pipe:
            self._audit(pipe, actor, event, request_id, **detail)
            pipe.execute()

    # --- entering the queue ----------------------------------------------------------------------

    @answers
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
        request_id = record["request_id"]

        def add(pipe: Pipeline) -> bool:
            if pipe.exists(self.keys.item(request_id)):
                return False
            seq = int(pipe.incr(self.keys.seq))
            pipe.multi()
            self._add_item(pipe, record, seq, reason=reason, priority=priority, actor=actor, gold=gold)
            return True

        return self._transaction(add, self.keys.item(request_id))

    def _add_item(
        self,
        pipe: Pipeline,
        record: dict[str, Any],
        seq: int,
        *,
        reason: str,
        priority: int,
        actor: str,
        gold: Label | None,
    ) -> None:
        """Queue the writes of a new item (inside MULTI; the caller checked it is new)."""
        keys, request_id, now = self.keys, record["request_id"], time.time()
        category = (record.get("categories") or ["none"])[0]
        language = record.get("language") or "und"
        member = f"{seq:016d}:{request_id}"
        fields = {
            "request_id": request_id, "entered": repr(now), "reason": reason, "priority": priority,
            "category": category, "language": language, "tenant": record.get("tenant") or "default",
            "record": orjson.dumps(record).decode(), "status": "open", "member": member, "seq": seq,
        }  # fmt: skip
        if gold is not None:
            fields["gold"] = gold.model_dump_json()
        pipe.hset(keys.item(request_id), mapping=fields)
        pipe.zadd(keys.items, {request_id: seq})
        if gold is not None:
            pipe.zadd(keys.gold, {member: 0})  # served in order of entry
        else:
            pipe.zadd(keys.open, {member: -priority})
        day = keys.entered(int(now // DAY_S))
        pipe.hincrby(day, orjson.dumps([reason, category, language]).decode(), 1)
        pipe.expire(day, 3 * DAY_S)
        self._audit(pipe, actor, "enqueued", request_id, reason=reason, gold=gold is not None)

    def _set_priority(self, pipe: Pipeline, fields: dict[str, str], priority: int) -> None:
        """Queue a new priority for an item, and its place in the queue it waits in (inside MULTI)."""
        pipe.hset(self.keys.item(fields["request_id"]), "priority", priority)
        waiting = {"open": self.keys.open, "adjudication": self.keys.adjudication}.get(fields["status"])
        if waiting is not None and "gold" not in fields:
            pipe.zadd(waiting, {fields["member"]: -priority})

    @answers
    def report(self, request_id: str, record: dict[str, Any] | None, *, actor: str, reason: str) -> None:
        """A user's report: the item enters at the top (or moves there when already queued)."""

        def move(pipe: Pipeline) -> None:
            fields: dict[str, str] = pipe.hgetall(self.keys.item(request_id))
            if fields:
                pipe.multi()
                self._set_priority(pipe, fields, max(int(fields["priority"]), 100))
            else:
                if record is None:
                    raise ReviewError(f"no decision record with request id {request_id!r}", 404)
                seq = int(pipe.incr(self.keys.seq))
                pipe.multi()
                self._add_item(pipe, record, seq, reason="user report", priority=100, actor=actor, gold=None)
            self._audit(pipe, actor, "reported", request_id, reason=reason)

        self._transaction(move, self.keys.item(request_id))

    @answers
    def entered_today(self, reason: str, category: str, language: str) -> int:
        day = self.keys.entered(int(time.time() // DAY_S))
        return int(self._client.hget(day, orjson.dumps([reason, category, language]).decode()) or 0)

    @answers
    def cursor(self, name: str) -> str | None:
        value: str | None = self._client.hget(self.keys.meta, name)
        return value

    @answers
    def set_cursor(self, name: str, value: str) -> None:
        self._client.hset(self.keys.meta, name, value)

    # --- reviewing -------------------------------------------------------------------------------

    @answers
    def next_item(self, reviewer: str) -> dict[str, Any] | None:
        """The next item for ``reviewer``: a gold one every ``gold_every``-th time if one is left for them,
        else the open item of highest priority, oldest first, that they have not labelled."""
        served = int(self._client.hget(self.keys.meta, f"served:{reviewer}") or 0)
        found = None
        if self.gold_every and served % self.gold_every == self.gold_every - 1:
            found = self._first(self.keys.gold, reviewer, None)
        if found is None:
            found = self._first(self.keys.open, reviewer, self.labels_per_item)
        if found is None:
            return None
        self._client.hincrby(self.keys.meta, f"served:{reviewer}", 1)
        return self.item(found, reveal=False)

    def _first(self, queue: str, reviewer: str, max_labels: int | None) -> str | None:
        """The first item of ``queue`` that ``reviewer`` has not labelled (and that has fewer than
        ``max_labels`` labels, when given)."""
        start = 0
        while members := self._client.zrange(queue, start, start + CHUNK - 1):
            ids = [request_id_of(m) for m in members]
            with self._client.pipeline(transaction=False) as pipe:
                for request_id in ids:
                    pipe.hexists(self.keys.labels(request_id), reviewer)
                    pipe.hlen(self.keys.labels(request_id))
                replies = pipe.execute()
            for n, request_id in enumerate(ids):
                mine, count = replies[2 * n], replies[2 * n + 1]
                if not mine and (max_labels is None or count < max_labels):
                    return request_id
            start += CHUNK
        return None

    @answers
    def item(self, request_id: str, *, reveal: bool = True) -> dict[str, Any]:
        """An item as the API shows it; ``reveal=False`` hides what a reviewer must not see (whether it
        is gold, its answer, the other reviewers' labels)."""
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.item(request_id))
            pipe.hgetall(self.keys.labels(request_id))
            fields, labels = pipe.execute()
        if not fields:
            raise ReviewError(f"no review item {request_id!r}", 404)
        item: dict[str, Any] = {
            "request_id": fields["request_id"],
            "entered": float(fields["entered"]),
            "reason": fields["reason"],
            "priority": int(fields["priority"]),
            "category": fields["category"],
            "language": fields["language"],
            "tenant": fields["tenant"],
            "record": orjson.loads(fields["record"]),
            "status": "open" if "gold" in fields else fields["status"],
            "candidates": orjson.loads(fields.get("candidates", "[]")),
        }
        if reveal:
            item["gold"] = orjson.loads(fields["gold"]) if "gold" in fields else None
            item["final"] = orjson.loads(fields["final"]) if "final" in fields else None
            item["labels"] = [
                {"reviewer": name, "created": created, **label.model_dump(mode="json")}
                for name, created, label in stored_labels(labels)
            ]
        return item

    @answers
    def label(self, reviewer: str, request_id: str, label: Label) -> dict[str, Any]:
        """Record ``reviewer``'s label; decides the item when enough labels agree, else sends it to
        adjudication. A reviewer may change their label while the item is still open."""
        item_key, labels_key = self.keys.item(request_id), self.keys.labels(request_id)

        def write(pipe: Pipeline) -> str:
            fields: dict[str, str] = pipe.hgetall(item_key)
            if not fields:
                raise ReviewError(f"no review item {request_id!r}", 404)
            gold = "gold" in fields
            if not gold and fields["status"] != "open":
                raise ReviewError(f"item {request_id!r} is already {fields['status']}", 409)
            check_ranking(label, orjson.loads(fields.get("candidates", "[]")))
            stored: dict[str, str] = pipe.hgetall(labels_key)
            old = stored.get(reviewer)
            now = time.time()
            pipe.multi()
            value = {"created": now, "label": label.model_dump(mode="json")}
            pipe.hset(labels_key, reviewer, orjson.dumps(value).decode())
            self._audit(pipe, reviewer, "labelled", request_id, label=label.model_dump(mode="json"),
                        previous=orjson.loads(old)["label"] if old else None)  # fmt: skip
            if gold:
                return "open"
            stored[reviewer] = orjson.dumps(value).decode()
            return self._settle(pipe, fields, [x for _, _, x in stored_labels(stored)])

        status = self._transaction(write, item_key, labels_key)
        return {"request_id": request_id, "status": status}

    @answers
    def set_candidates(
        self, actor: str, request_id: str, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Keep the candidate answers of an item, once: every reviewer ranks the same ones. Returns the
        item's candidates (those already there, unchanged, when another reviewer made them first)."""
        item_key = self.keys.item(request_id)

        def write(pipe: Pipeline) -> list[dict[str, Any]]:
            status, gold, stored = pipe.hmget(item_key, ["status", "gold", "candidates"])
            if status is None:
                raise ReviewError(f"no review item {request_id!r}", 404)
            if stored:
                kept: list[dict[str, Any]] = orjson.loads(stored)
                return kept
            if gold is None and status == "done":
                raise ReviewError(f"item {request_id!r} is already done", 409)
            pipe.multi()
            pipe.hset(item_key, "candidates", orjson.dumps(candidates).decode())
            self._audit(pipe, actor, "candidates generated", request_id, n=len(candidates),
                        models=sorted({str(c.get("model", "")) for c in candidates}))  # fmt: skip
            return candidates

        return self._transaction(write, item_key)

    def _settle(self, pipe: Pipeline, fields: dict[str, str], labels: list[Label]) -> str:
        """Queue what ``labels`` make of an open item (inside MULTI); its status afterwards."""
        settled = settle(labels, self.labels_per_item)
        request_id, member = fields["request_id"], fields["member"]
        if settled.final is not None:
            final = settled.final
            pipe.hset(
                self.keys.item(request_id), mapping={"status": "done", "final": final.model_dump_json()}
            )
            pipe.zrem(self.keys.open, member)
            self._audit(pipe, "review", "decided", request_id, final=final.model_dump(mode="json"))
        elif settled.status == "adjudication":
            pipe.hset(self.keys.item(request_id), "status", "adjudication")
            pipe.zrem(self.keys.open, member)
            pipe.zadd(self.keys.adjudication, {member: -int(fields["priority"])})
            self._audit(pipe, "review", "disputed", request_id, labels=[x.key() for x in labels])
        return settled.status

    @answers
    def disputed(self) -> list[dict[str, Any]]:
        return [self.item(request_id_of(m)) for m in self._client.zrange(self.keys.adjudication, 0, -1)]

    @answers
    def adjudicate(self, adjudicator: str, request_id: str, decision: Label) -> dict[str, Any]:
        if not decision.reason:
            raise ReviewError("an adjudication needs a reason", 400)
        item_key = self.keys.item(request_id)

        def decide(pipe: Pipeline) -> None:
            status, member, candidates = pipe.hmget(item_key, ["status", "member", "candidates"])
            if status is None:
                raise ReviewError(f"no review item {request_id!r}", 404)
            if status != "adjudication":
                raise ReviewError(f"item {request_id!r} is {status}, not waiting for adjudication", 409)
            check_ranking(decision, orjson.loads(candidates or "[]"))
            pipe.multi()
            pipe.hset(item_key, mapping={"status": "done", "final": decision.model_dump_json()})
            pipe.zrem(self.keys.adjudication, member)
            self._audit(pipe, adjudicator, "adjudicated", request_id, final=decision.model_dump(mode="json"))

        self._transaction(decide, item_key)
        return {"request_id": request_id, "status": "done"}

    # --- roles -----------------------------------------------------------------------------------

    @answers
    def role_overrides(self) -> dict[str, Role]:
        roles: dict[str, Role] = self._client.hgetall(self.keys.roles)
        return roles

    @answers
    def set_role(self, admin: str, reviewer: str, role: Role) -> None:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.roles, reviewer, role)
            self._audit(pipe, admin, "role changed", None, reviewer=reviewer, role=role)
            pipe.execute()

    @answers
    def audit(self, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Audit events, newest first (of one item, or of all)."""
        if request_id is None:
            entries = self._client.xrevrange(self.keys.audit, count=limit)
        else:
            ids = self._client.lrange(self.keys.events(request_id), -limit, -1)
            with self._client.pipeline(transaction=False) as pipe:
                for entry_id in reversed(ids):
                    pipe.xrange(self.keys.audit, entry_id, entry_id)
                entries = [found[0] for found in pipe.execute() if found]
        return [
            {"at": float(f["at"]), "actor": f["actor"], "event": f["event"],
             "request_id": f["request_id"] or None, **orjson.loads(f["detail"])}
            for _, f in entries
        ]  # fmt: skip

    # --- agreement -------------------------------------------------------------------------------

    @answers
    def stats(self) -> dict[str, Any]:
        """Queue counts and agreement (:func:`gateway.review.agreement.summarise`)."""
        rows, labels, gold = [], [], {}
        for request_id, (category, gold_answer, status), stored in self._all_items(
            "category", "gold", "status"
        ):
            if status is None:  # never: an item and its place in `items` are written together
                continue
            if gold_answer:
                gold[request_id] = Label.model_validate_json(gold_answer).key()
            rows.append((request_id, category or "none", bool(gold_answer), status))
            labels += [(request_id, name, label.key()) for name, _, label in stored_labels(stored)]
        return summarise(rows, labels, gold, self.labels_per_item)

    @answers
    def backlog(self) -> int:
        with self._client.pipeline(transaction=True) as pipe:
            pipe.zcard(self.keys.open)
            pipe.zcard(self.keys.adjudication)
            waiting, disputed = pipe.execute()
        return int(waiting) + int(disputed)
