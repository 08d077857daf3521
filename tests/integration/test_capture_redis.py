"""Capture end to end: `railguard serve --redis-url` in front of the stub upstream, a real
`redis-server` that the test stops and restarts mid-traffic, and the gateway itself restarted with a
non-empty spool and killed with -9. Every flagged request's record arrives once; none is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import orjson
import pytest
import redis
import yaml

from tests.servers import RAILGUARD, ROOT, free_port, redis_server, stub_upstream, wait_for

pytestmark = pytest.mark.integration
STREAM = "{railguard}:records"
POLICY = Path(__file__).parents[1] / "data" / "policy.yaml"


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with stub_upstream() as url:
        yield url


@contextmanager
def serving(tmp: Path, upstream: str, redis_url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    config = tmp / "railguard.yaml"
    settings = {
        "upstream": {"url": upstream},
        "policy_file": str(POLICY),
        "classifiers": {"enabled": False},
        "sink": {"spool_path": str(tmp / "records.spool")},
    }
    config.write_text(yaml.safe_dump(settings))
    cmd = [*RAILGUARD, "serve", "--port", str(port), "--config", str(config), "--redis-url", redis_url]
    with open(tmp / f"gateway-{port}.log", "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env={**os.environ, "RAILGUARD_CACHE_DIR": str(tmp)}, stdout=log, stderr=log
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/readyz", proc=proc)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def ask(port: int, text: str) -> tuple[str, str]:
    """(action, request id) of one chat request through the official client."""
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0) as client:
        reply = client.chat.completions.create(
            model="stub-model", messages=[{"role": "user", "content": text}], timeout=10
        )
    block = (reply.model_extra or {})["railguard"]
    return block["action"], block["request_id"]


def harmful(i: int) -> str:
    return f"Tell me the launch codes, attempt {i}"  # the test policy refuses it (a deny rule)


def stream_ids(url: str) -> list[str]:
    entries = redis.Redis.from_url(url).xrange(STREAM)
    records = [orjson.loads(fields[b"record"]) for _, fields in entries]
    assert all(r["schema"] == 1 and r["flagged"] for r in records)
    return [r["request_id"] for r in records]


def wait_ids(url: str, expected: set[str], timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        ids = stream_ids(url)
        if expected <= set(ids) or time.monotonic() > deadline:
            return ids
        time.sleep(0.1)


def test_redis_stopped_mid_traffic_and_a_gateway_restart_lose_nothing(
    upstream_url: str, tmp_path: Path
) -> None:
    redis_port, port = free_port(), free_port()
    data = tmp_path / "redis"
    flagged: set[str] = set()
    with redis_server(data, redis_port) as url, serving(tmp_path, upstream_url, url, port):
        for i in range(10):
            action, rid = ask(port, harmful(i) if i % 2 else f"Say hello {i}")
            assert action == ("refuse" if i % 2 else "allow")
            if i % 2:
                flagged.add(rid)
        assert set(wait_ids(url, flagged)) == flagged  # only the flagged ones
    # Redis is down now; the gateway keeps answering, the records spool
    second = free_port()
    with serving(tmp_path, upstream_url, f"redis://127.0.0.1:{redis_port}/0", second):
        started = time.monotonic()
        for i in range(10, 20):
            action, rid = ask(second, harmful(i))
            assert action == "refuse"
            flagged.add(rid)
        assert time.monotonic() - started < 10  # no request waited on the dead Redis for long
        assert (tmp_path / "records.spool").stat().st_size > 0
    # the gateway stopped with a non-empty spool; Redis and a new gateway start: the spool is replayed
    with redis_server(data, redis_port) as url, serving(tmp_path, upstream_url, url, free_port()):
        ids = wait_ids(url, flagged)
        assert sorted(ids) == sorted(flagged) and len(ids) == len(set(ids)) == 15  # once each
        assert not (tmp_path / "records.spool").exists()


def test_kill_9_loses_at_most_the_requests_in_flight(upstream_url: str, tmp_path: Path) -> None:
    port = free_port()
    with redis_server(tmp_path / "redis") as url:
        with serving(tmp_path, upstream_url, url, port) as proc:
            answered = [ask(port, harmful(i))[1] for i in range(20)]
            proc.send_signal(signal.SIGKILL)  # right after the last answer
            proc.wait()
        ids = stream_ids(url)
    lost = set(answered) - set(ids)
    # documented bound (docs/capture.md): records of requests answered in the last few milliseconds
    # before the kill may still be in the in-memory queue; here requests are sequential, so at most 1
    assert len(lost) <= 1, lost
    assert len(ids) == len(set(ids))
