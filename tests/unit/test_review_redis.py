"""What only the Redis review store has to promise, against a real `redis-server` started here: a Redis
that is down is a 503 (`ReviewUnavailableError`), quickly, and the same store serves again once it is
back; a change that fails before EXEC writes nothing; every key sits under the one prefix; the records a
dead replica read and never acknowledged are taken over by a live one, and queued once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from gateway.errors import ReviewUnavailableError
from gateway.review.intake import Intake, StreamIntake
from gateway.review.redis_store import RedisReviewStore
from gateway.review.store import Label
from gateway.sinks.redis import RecordReader
from tests.servers import free_port, redis_server

REFUSE = Label(action="refuse", category="violence")
ALLOW = Label(action="allow", category="none")
PREFIX = "{railguard}:review:"


def record(i: int) -> dict[str, Any]:
    return {
        "request_id": f"r{i}", "tenant": "t", "language": "en", "action": "refuse", "flagged": True,
        "categories": ["violence"], "prompt": [{"role": "user", "content": "x"}], "response": "y",
    }  # fmt: skip


def test_redis_down_is_a_503_and_once_back_the_same_store_serves_the_same_queue(tmp_path: Path) -> None:
    port, data = free_port(), tmp_path / "redis"
    with redis_server(data, port) as url:
        store = RedisReviewStore(url, labels_per_item=2, gold_every=0)
        store.enqueue(record(1), reason="refused", priority=0)
        store.label("ann", "r1", REFUSE)
        before = store.stats()
    try:
        calls = [
            lambda: store.next_item("bob"),
            lambda: store.label("bob", "r1", REFUSE),
            lambda: store.item("r1"),
            lambda: store.stats(),
            lambda: store.role_overrides(),
            lambda: store.import_lines(
                ['{"type": "label", "request_id": "r1", "reviewer": "cat", "label": {"action": "allow"}}'],
                actor="admin",
            ),
            lambda: list(store.export()),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(ReviewUnavailableError) as err:
                call()
            assert err.value.status == 503 and err.value.code == "review_store_unavailable"
            assert time.monotonic() - started < 5
        with redis_server(data, port):  # the same data: the append-only file kept it
            assert store.stats() == before
            assert store.label("bob", "r1", REFUSE)["status"] == "done"
            assert [e["event"] for e in store.audit("r1")] == ["decided", "labelled", "labelled", "enqueued"]
    finally:
        store.close()


def test_a_change_that_fails_before_exec_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server(tmp_path / "redis") as url:
        store = RedisReviewStore(url, labels_per_item=2, gold_every=0)
        try:
            store.enqueue(record(1), reason="refused", priority=0)
            store.label("ann", "r1", REFUSE)
            audit = store._audit

            def lost_at_the_dispute(pipe: Any, actor: str, event: str, *args: Any, **kw: Any) -> None:
                if event == "disputed":  # the label and its audit event are queued already
                    raise redis.ConnectionError("connection lost")
                audit(pipe, actor, event, *args, **kw)

            monkeypatch.setattr(store, "_audit", lost_at_the_dispute)
            with pytest.raises(ReviewUnavailableError):
                store.label("bob", "r1", ALLOW)
            monkeypatch.undo()
            item = store.item("r1")
            assert item["status"] == "open" and [x["reviewer"] for x in item["labels"]] == ["ann"]
            assert [e["event"] for e in store.audit("r1")] == ["labelled", "enqueued"]
            assert store.label("bob", "r1", ALLOW)["status"] == "adjudication"  # and it works again
        finally:
            store.close()


def test_every_key_is_under_the_prefix_and_a_redelivered_record_adds_nothing(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:
        store = RedisReviewStore(url, labels_per_item=1, gold_every=0)
        try:
            assert store.enqueue(record(1), reason="refused", priority=0)
            written = redis.Redis.from_url(url).dbsize()
            assert not store.enqueue(record(1), reason="refused", priority=5)  # redelivered
            assert redis.Redis.from_url(url).dbsize() == written and store.item("r1")["priority"] == 0
            store.label("ann", "r1", REFUSE)
            store.set_role("root", "ann", "adjudicator")
            store.log_event("ann", "logged in")
            store.set_cursor("sqlite", "7")
            client = redis.Redis.from_url(url, decode_responses=True)
            keys = set(client.scan_iter("*"))
            assert keys and all(k.startswith(PREFIX) for k in keys), keys
            assert client.xlen(PREFIX + "audit") == 5  # enqueued, labelled, decided, role, login
            assert store.entered_today("refused", "violence", "en") == 1
            client.close()
        finally:
            store.close()


def test_records_a_dead_replica_read_and_never_acknowledged_are_claimed_and_queued_once(
    tmp_path: Path,
) -> None:
    stream = "{railguard}:records"
    with redis_server(tmp_path / "redis") as url:
        client = redis.Redis.from_url(url)
        for i in range(6):
            client.xadd(stream, {"id": f"r{i}", "record": orjson.dumps(record(i))})
        dead = RecordReader(url, stream=stream, group="review", consumer="replica-a")
        taken = dead.read(count=4)  # replica A reads four records, then dies before acknowledging them
        assert [r["request_id"] for _, r in taken] == ["r0", "r1", "r2", "r3"]
        store = RedisReviewStore(url, labels_per_item=2, gold_every=0)
        intake = Intake(store)
        patient = StreamIntake(intake, url, stream, consumer="replica-b", reclaim_after_s=3600)
        assert patient.poll() == 2  # A's records are not idle that long: B reads only the two nobody read
        assert patient.poll() == 0
        time.sleep(0.3)
        live = StreamIntake(intake, url, stream, consumer="replica-b", reclaim_after_s=0.2)
        assert live.poll() == 4  # idle past 0.2 s: claimed, queued, acknowledged
        assert live.poll() == 0
        try:
            assert client.xpending(stream, "review")["pending"] == 0
            assert dead.read(count=10) == []  # A, back, finds nothing of its own left to redeliver
            for _, late in taken:  # ... or delivers its batch after all: nothing is queued twice
                assert not intake.offer(late)
            assert store.stats()["queue"]["open"] == 6
            assert sorted(e["request_id"] for e in store.audit() if e["event"] == "enqueued") == [
                f"r{i}" for i in range(6)
            ]
        finally:
            for closing in (dead, patient, live, store, client):
                closing.close()
