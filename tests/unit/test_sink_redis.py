"""The Redis Streams sink against a real `redis-server` (started here): written, spooled while Redis
is down, replayed in order exactly once, read through a consumer group with redelivery, found by
request id through the entry id its claim keeps."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import redis

from gateway.policy.verdict import Action
from gateway.records import DecisionRecord
from gateway.sinks.redis import RecordReader, RedisStreamSink, StreamRecords, claim_prefix, sampled
from tests.servers import free_port, redis_server

STREAM = "{railguard}:records"


class Events:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def sink_event(self, event: str, count: int = 1) -> None:
        self.counts[event] = self.counts.get(event, 0) + count

    def set_sink_lag(self, seconds: float) -> None:
        pass


def _record(i: int, action: Action = Action.REFUSE, **kw: object) -> DecisionRecord:
    return DecisionRecord(f"r{i}", time.time(), "t", "m", "upstream", "v1", "en", False, action, 200, **kw)  # type: ignore[arg-type]


def _ids(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    return [fields[b"id"].decode() for _, fields in client.xrange(STREAM)]


def _wait(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_flagged_records_reach_the_stream_deidentified(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:
        sink = RedisStreamSink(url, stream=STREAM, spool_path=tmp_path / "spool")
        prompt = [{"role": "user", "content": "mail me at jane.doe@example.com"}]
        sink.submit(_record(1, prompt=prompt, response="Call +44 20 7946 0958"))
        sink.submit(_record(2, Action.ALLOW))  # not flagged: not sampled at rate 0
        sink.submit(_record(3, prompt=prompt, raw_text=True))
        sink.close()
        entries = redis.Redis.from_url(url).xrange(STREAM)
    import orjson

    records = {f[b"id"].decode(): orjson.loads(f[b"record"]) for _, f in entries}
    assert list(records) == ["r1", "r3"]
    assert records["r1"]["schema"] == 1 and records["r1"]["action"] == "refuse"
    assert "jane.doe@example.com" not in records["r1"]["prompt"][0]["content"]
    assert "[EMAIL]" in records["r1"]["prompt"][0]["content"]
    assert "7946" not in records["r1"]["response"]
    assert records["r3"]["prompt"] == prompt and records["r3"]["raw_text"] is True


def test_redis_down_spools_then_replays_in_order_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    events = Events()
    spool = tmp_path / "spool"
    with redis_server(tmp_path / "redis", port) as url:
        sink = RedisStreamSink(url, stream=STREAM, spool_path=spool, events=events, timeout_s=0.5)
        for i in range(5):
            sink.submit(_record(i))
        _wait(lambda: events.counts.get("written", 0) == 5)
    # Redis is gone: the request path does not wait, the records go to the spool (owner-only file)
    started = time.monotonic()
    for i in range(5, 25):
        sink.submit(_record(i))
    assert time.monotonic() - started < 0.5
    _wait(lambda: events.counts.get("spooled", 0) == 20)
    assert events.counts.get("spooled") == 20 and stat.S_IMODE(spool.stat().st_mode) == 0o600
    with redis_server(tmp_path / "redis", port) as url:  # back, with its data (append-only file)
        _wait(lambda: events.counts.get("replayed", 0) == 20)
        sink.submit(_record(25))
        sink.close()
        assert _ids(url) == [f"r{i}" for i in range(26)]
    assert events.counts.get("dropped", 0) == 0 and not spool.exists()


def test_a_spool_left_by_a_stopped_gateway_is_replayed_at_start_without_duplicates(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with redis_server(tmp_path / "redis") as url:
        first = RedisStreamSink(url, stream=STREAM, spool_path=spool)
        first.submit(_record(1))
        first.close()
        # a spool holding r1 again (sent, but the reply was lost) and r2 (never sent)
        second = RedisStreamSink("redis://127.0.0.1:9/0", stream=STREAM, spool_path=spool, timeout_s=0.2)
        second.submit(_record(1))
        second.submit(_record(2))
        second.close()
        assert spool.exists()
        third = RedisStreamSink(url, stream=STREAM, spool_path=spool)
        third.close()
        assert _ids(url) == ["r1", "r2"] and not spool.exists()


def test_a_full_queue_spools_instead_of_dropping(tmp_path: Path) -> None:
    events = Events()
    spool = tmp_path / "spool"
    sink = RedisStreamSink(
        "redis://127.0.0.1:9/0", stream=STREAM, spool_path=spool, queue_size=1, events=events, timeout_s=0.2
    )
    for i in range(50):
        sink.submit(_record(i))
    sink.close()
    assert events.counts.get("dropped", 0) == 0
    with redis_server(tmp_path / "redis") as url:
        RedisStreamSink(url, stream=STREAM, spool_path=spool).close()
        assert sorted(_ids(url), key=lambda x: int(x[1:])) == [f"r{i}" for i in range(50)]


def test_sampling_keeps_a_share_of_unflagged_records_deterministically() -> None:
    kept = sum(sampled(f"req-{i}", 0.1) for i in range(10_000))
    assert 850 < kept < 1150
    assert sampled("req-7", 0.5) == sampled("req-7", 0.5)
    assert not any(sampled(f"req-{i}", 0.0) for i in range(100))


def test_the_consumer_group_redelivers_what_was_not_acknowledged(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:
        sink = RedisStreamSink(url, stream=STREAM, spool_path=tmp_path / "spool")
        for i in range(3):
            sink.submit(_record(i))
        sink.close()
        reader = RecordReader(url, stream=STREAM, group="review", consumer="a")
        first = reader.read(count=10)
        assert [r["request_id"] for _, r in first] == ["r0", "r1", "r2"]
        reader.ack([first[0][0]])
        reader.close()  # "crashed" before storing r1 and r2
        again = RecordReader(url, stream=STREAM, group="review", consumer="a")
        redelivered = again.read(count=10)
        assert [r["request_id"] for _, r in redelivered] == ["r1", "r2"]
        again.ack([eid for eid, _ in redelivered])
        assert again.read(count=10, block_ms=100) == []


def test_an_unwritable_spool_counts_the_records_as_dropped_and_the_request_path_goes_on(
    tmp_path: Path,
) -> None:
    events = Events()
    (tmp_path / "spool").mkdir()  # a directory where the spool file should be: every append fails
    sink = RedisStreamSink(
        "redis://127.0.0.1:9/0", stream=STREAM, spool_path=tmp_path / "spool", events=events, timeout_s=0.2
    )
    for i in range(3):
        sink.submit(_record(i))  # no exception reaches the request path
    sink.close()
    assert events.counts.get("dropped") == 3 and "spooled" not in events.counts


def test_a_record_is_found_by_request_id_through_the_entry_id_its_claim_keeps(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:
        sink = RedisStreamSink(url, stream=STREAM, spool_path=tmp_path / "spool", maxlen=1000)
        for i in range(3):
            sink.submit(_record(i))
        sink.close()
        client = redis.Redis.from_url(url, decode_responses=True)
        entries = {fields["id"]: entry_id for entry_id, fields in client.xrange(STREAM)}
        assert {r: client.get(claim_prefix(STREAM) + r) for r in entries} == entries
        assert 0 < client.ttl(claim_prefix(STREAM) + "r1") <= 7 * 24 * 3600
        records = StreamRecords(url, stream=STREAM)
        try:
            found = records.find("r1")
            assert found is not None and found["request_id"] == "r1" and found["action"] == "refuse"
            assert records.find("r9") is None  # never recorded
            client.set(claim_prefix(STREAM) + "old", "1")  # claimed by a gateway that kept no entry id
            assert records.find("old") is None
            client.xdel(STREAM, entries["r2"])  # trimmed away (MAXLEN) while its claim lives on
            assert records.find("r2") is None
            client.close()
        finally:
            records.close()
