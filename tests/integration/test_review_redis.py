"""Two gateway replicas (`railguard serve --redis-url`, each with a cache directory of its own) on one
real `redis-server` serve one review queue: flagged traffic through replica A reaches the queue through
the stream, a reviewer labels on A and another on B, their disagreement goes to the adjudicator, whose
decision on B is final on A; statistics, audit log and exports are the same on both, every audit event
is there once. Redis stopped: the review routes answer a 503 in OpenAI's error shape; restarted: the
same queue, served again. A user's report on a request whose record is in the stream but not in the
queue (an answer no guard flagged) finds the record there and puts it at the top of the queue."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from gateway.sinks.redis import claim_prefix
from tests.servers import free_port, gateway, redis_server, stub_upstream

pytestmark = pytest.mark.integration
POLICY = Path(__file__).parents[1] / "data" / "policy.yaml"
KEYS = {
    "ann": "ann-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef",
    "judy": "judy-key-0123456789abcd",
    "root": "root-key-0123456789abcd",
}
ROLES = {"ann": "reviewer", "bob": "reviewer", "judy": "adjudicator", "root": "admin"}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Replicas A and B, started before Redis is (they must not need it to start)."""
    tmp = tmp_path_factory.mktemp("replicas")
    redis_port = free_port()
    config = tmp / "railguard.yaml"
    reviewers = {
        name: {"api_key_sha256": hashlib.sha256(key.encode()).hexdigest(), "role": ROLES[name]}
        for name, key in KEYS.items()
    }
    config.write_text(yaml.safe_dump({
        "policy_file": str(POLICY),
        "classifiers": {"enabled": False},
        "redis_url": f"redis://127.0.0.1:{redis_port}/0",
        "review": {"reviewers": reviewers, "labels_per_item": 2, "gold_every": 0, "poll_s": 0.2},
    }))  # fmt: skip
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    with stub_upstream() as upstream:
        extra = ["--upstream", upstream]
        with (
            gateway(config, cache_dir=tmp / "a", extra=extra) as a,
            gateway(config, cache_dir=tmp / "b", extra=extra) as b,
        ):
            yield {"a": a, "b": b, "redis_port": redis_port, "redis_dir": tmp / "redis"}


def api(url: str, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEYS[who]}"}
    return httpx.request(method, url + path, headers=headers, timeout=10, **kw)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def refused_requests(url: str, n: int) -> list[str]:
    return [chat(url, f"Tell me the launch codes ({i})")[1] for i in range(n)]


def chat(url: str, text: str) -> tuple[str, str]:
    """(action, request id) of one chat request through the official client."""
    with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": text}]
        )
    block = (reply.model_extra or {})["railguard"]
    return block["action"], block["request_id"]


def test_two_replicas_serve_one_queue_and_a_redis_outage_is_a_503(replicas: dict[str, Any]) -> None:
    a, b = replicas["a"], replicas["b"]
    with redis_server(replicas["redis_dir"], replicas["redis_port"]):
        ids = refused_requests(a, 3)  # through A only; either replica's intake may queue them
        deadline = time.monotonic() + 30
        while ok(api(b, "judy", "GET", "/v1/review/stats"))["queue"]["open"] < 3:
            assert time.monotonic() < deadline, "the flagged records did not reach the queue"
            time.sleep(0.2)
        # ann labels everything on A; bob on B, disagreeing with her on the second item
        plan = {"ann": ["refuse"] * 3, "bob": ["refuse", "allow", "refuse"]}
        for who, url in (("ann", a), ("bob", b)):
            while item := ok(api(url, who, "GET", "/v1/review/next"))["item"]:
                action = plan[who][ids.index(item["request_id"])]
                label = {"action": action, "category": "secrets" if action == "refuse" else "none"}
                ok(api(url, who, "POST", f"/v1/review/items/{item['request_id']}/labels", json=label))
            if who == "ann":  # labelled on A, seen as labelled on B: nothing left for her there
                assert ok(api(b, "ann", "GET", "/v1/review/next"))["item"] is None
                seen = ok(api(b, "judy", "GET", f"/v1/review/items/{ids[0]}"))
                assert [x["reviewer"] for x in seen["labels"]] == ["ann"]
        [disputed] = ok(api(a, "judy", "GET", "/v1/review/adjudication"))["items"]
        assert disputed["request_id"] == ids[1]
        decision = {"action": "refuse", "category": "secrets", "reason": "It asks for the launch codes."}
        ok(api(b, "judy", "POST", f"/v1/review/items/{ids[1]}/adjudication", json=decision))
        final = ok(api(a, "judy", "GET", f"/v1/review/items/{ids[1]}"))
        assert final["status"] == "done" and final["final"]["reason"] == decision["reason"]
        again = api(a, "judy", "POST", f"/v1/review/items/{ids[1]}/adjudication", json=decision)
        assert again.status_code == 409  # final on both
        stats = ok(api(a, "judy", "GET", "/v1/review/stats"))
        assert stats == ok(api(b, "judy", "GET", "/v1/review/stats"))
        assert stats["queue"] == {"open": 0, "adjudication": 0, "done": 3}
        [pair] = stats["pairs"]
        assert pair["reviewers"] == ["ann", "bob"] and pair["agreement"] == pytest.approx(2 / 3)
        events = ok(api(a, "root", "GET", "/v1/review/audit"))["events"]
        assert events == ok(api(b, "root", "GET", "/v1/review/audit"))["events"]
        counted = Counter((e["event"], e["request_id"]) for e in events)
        expected = Counter({("enqueued", i): 1 for i in ids} | {("labelled", i): 2 for i in ids})
        expected.update({("decided", ids[0]): 1, ("decided", ids[2]): 1, ("disputed", ids[1]): 1,
                         ("adjudicated", ids[1]): 1})  # fmt: skip
        assert counted == expected  # every event once, from both replicas, in one log
        exported = api(a, "root", "GET", "/v1/review/export")
        assert exported.text == api(b, "root", "GET", "/v1/review/export").text
        assert len(exported.text.splitlines()) == 3
        gold = {"type": "gold", "record": {"request_id": "gold-1", "categories": ["secrets"]},
                "answer": {"action": "refuse", "category": "secrets"}}  # fmt: skip
        imported = api(b, "root", "POST", "/v1/review/import", content=json.dumps(gold) + "\n")
        assert ok(imported) == {"label": 0, "gold": 1}
        assert ok(api(a, "judy", "GET", "/v1/review/items/gold-1"))["gold"]["category"] == "secrets"
        stats = ok(api(a, "judy", "GET", "/v1/review/stats"))
        login = httpx.post(a + "/review/login", data={"key": KEYS["judy"]}, timeout=10)
        assert login.status_code == 303
        session = dict(login.cookies)
    # Redis is down: the review routes answer 503 in OpenAI's error shape, quickly, on both replicas
    for url, who, method, path in [
        (a, "ann", "GET", "/v1/review/next"),
        (b, "judy", "GET", "/v1/review/stats"),
        (a, "root", "GET", "/v1/review/audit"),
    ]:
        started = time.monotonic()
        down = api(url, who, method, path)
        assert down.status_code == 503, down.text
        error = down.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "review_store_unavailable")
        assert time.monotonic() - started < 10
    page = httpx.get(a + "/review/stats", cookies=session, timeout=10)  # a page, not a 403 page
    assert page.status_code == 503 and page.json()["error"]["code"] == "review_store_unavailable"
    labelled = api(b, "bob", "POST", f"/v1/review/items/{ids[0]}/labels", json={"action": "allow"})
    assert labelled.status_code == 503
    with redis_server(replicas["redis_dir"], replicas["redis_port"]):  # back, with its data
        assert ok(api(b, "judy", "GET", "/v1/review/stats")) == stats
        assert ok(api(a, "ann", "GET", "/v1/review/next")) == {"item": None}


def test_a_user_report_finds_the_record_in_the_stream_and_queues_it_at_the_top(tmp_path: Path) -> None:
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    config = tmp_path / "railguard.yaml"
    digests = {name: hashlib.sha256(KEYS[name].encode()).hexdigest() for name in ("ann", "judy")}
    reviewers = {name: {"api_key_sha256": digest, "role": ROLES[name]} for name, digest in digests.items()}
    config.write_text(yaml.safe_dump({
        "policy_file": str(POLICY),
        "classifiers": {"enabled": False},
        "redis_url": redis_url,
        "sink": {"record": "all"},  # unflagged records reach the stream too (intake takes only flagged ones)
        "review": {"reviewers": reviewers, "labels_per_item": 2, "gold_every": 0, "poll_s": 0.2},
    }))  # fmt: skip
    with (
        redis_server(tmp_path / "redis", redis_port),
        stub_upstream() as upstream,
        gateway(config, cache_dir=tmp_path, extra=["--upstream", upstream]) as url,
    ):
        action, request_id = chat(url, "say: hi")
        refused, flagged_id = chat(url, "Tell me the launch codes")
        assert (action, refused) == ("allow", "refuse")
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 30
        while ok(api(url, "judy", "GET", "/v1/review/stats"))["queue"]["open"] < 1:  # intake read both
            assert time.monotonic() < deadline, "the flagged record did not reach the queue"
            time.sleep(0.2)
        assert client.exists(claim_prefix("{railguard}:records") + request_id)  # in the stream, not queued
        assert api(url, "judy", "GET", f"/v1/review/items/{request_id}").status_code == 404

        user = {"Authorization": "Bearer unused"}
        report = {"request_id": request_id, "reason": "The answer is wrong."}
        reported = httpx.post(url + "/v1/review/reports", json=report, headers=user, timeout=10)
        assert reported.status_code == 202, reported.text
        assert reported.json() == {"request_id": request_id, "status": "reported"}
        item = ok(api(url, "judy", "GET", f"/v1/review/items/{request_id}"))
        assert (item["reason"], item["priority"], item["status"]) == ("user report", 100, "open")
        assert item["record"]["request_id"] == request_id and item["record"]["action"] == "allow"
        assert ok(api(url, "ann", "GET", "/v1/review/next"))["item"]["request_id"] == request_id  # at the top
        assert ok(api(url, "judy", "GET", "/v1/review/stats"))["queue"]["open"] == 2
        again = httpx.post(url + "/v1/review/reports", json=report, headers=user, timeout=10)
        assert again.status_code == 202  # reported twice: still one item
        assert ok(api(url, "judy", "GET", "/v1/review/stats"))["queue"]["open"] == 2

        nope = {"request_id": "chatcmpl-nope"}
        unknown = httpx.post(url + "/v1/review/reports", json=nope, headers=user, timeout=10)
        assert unknown.status_code == 404, unknown.text
        error = unknown.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and "chatcmpl-nope" in error["message"]
        assert ok(api(url, "judy", "GET", f"/v1/review/items/{flagged_id}"))["reason"] == "refused"
        client.close()
