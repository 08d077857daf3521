"""Rate limits shared through a real `redis-server` (started here): two gateway apps that share one
Redis spend one budget per key; when Redis hangs or dies mid-run, requests are still served, decided by
each app's own buckets and counted in `railguard_ratelimit_fallbacks_total`, and the budget is shared
again once Redis is back. The official openai client over httpx.ASGITransport, the real stub upstream."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import Settings
from tests.servers import RAILGUARD, ROOT, free_port, redis_server
from tests.servers import gateway as serve

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

KEY = "sk-shared-budget-0001"
HELLO = [{"role": "user", "content": "say: Hello there."}]


@dataclass
class App:
    client: openai.AsyncOpenAI
    metrics: CollectorRegistry

    async def remaining(self) -> int:
        raw = await self.client.chat.completions.with_raw_response.create(model="stub-model", messages=HELLO)
        assert raw.parse().choices[0].message.content == "Hello there."
        return int(raw.headers["x-ratelimit-remaining-requests"])

    def fallbacks(self) -> float:
        return self.metrics.get_sample_value("railguard_ratelimit_fallbacks_total") or 0.0


@asynccontextmanager
async def gateway(tmp: Path, stub_url: str, redis_url: str, rpm: int) -> AsyncIterator[App]:
    settings = Settings.load(
        upstream={"url": stub_url}, cache_dir=tmp, classifiers={"enabled": False}, redis_url=redis_url,
        sink={"kind": "sqlite"}, tenants={"acme": {"api_keys": [KEY], "requests_per_minute": rpm}},
    )  # fmt: skip
    metrics = CollectorRegistry()
    app = create_app(settings, registry=metrics)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
    ):
        client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key=KEY, http_client=http, max_retries=0)
        yield App(client, metrics)


async def test_two_gateways_sharing_one_redis_share_one_budget(tmp_path: Path, stub_url: str) -> None:
    with redis_server(tmp_path / "redis") as url:
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(gateway(tmp_path / "a", stub_url, url, rpm=4))
            b = await stack.enter_async_context(gateway(tmp_path / "b", stub_url, url, rpm=4))
            left = [await a.remaining(), await b.remaining(), await a.remaining(), await b.remaining()]
            assert left == [3, 2, 1, 0]
            for replica in (a, b):
                with pytest.raises(openai.RateLimitError) as refused:
                    await replica.client.chat.completions.create(model="stub-model", messages=HELLO)
                assert refused.value.response.json()["error"]["code"] == "rate_limit_exceeded"
                assert 1 <= int(refused.value.response.headers["retry-after"]) <= 15
            assert a.fallbacks() == b.fallbacks() == 0
        keys = list(redis.Redis.from_url(url).scan_iter("railguard:ratelimit:*"))
        assert keys == [f"railguard:ratelimit:{hashlib.sha256(KEY.encode()).hexdigest()}".encode()]


async def test_requests_are_served_while_redis_hangs_or_dies(tmp_path: Path, stub_url: str) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(gateway(tmp_path / "a", stub_url, url, rpm=600))
        b = await stack.enter_async_context(gateway(tmp_path / "b", stub_url, url, rpm=600))
        with redis_server(tmp_path / "redis", port):
            assert [await a.remaining(), await b.remaining()] == [599, 598]  # shared
            pid = int(redis.Redis.from_url(url).info()["process_id"])
            os.kill(pid, signal.SIGSTOP)  # hung: every call to it times out
            try:
                started = time.monotonic()
                assert [await a.remaining() for _ in range(5)] == [599, 598, 597, 596, 595]  # a's own
                assert time.monotonic() - started < 5  # one timeout, then no more waiting on Redis
                assert a.fallbacks() == 5
            finally:
                os.kill(pid, signal.SIGKILL)  # and now dead: connections refused
            assert await b.remaining() == 599 and b.fallbacks() == 1
        started = time.monotonic()
        assert [await b.remaining() for _ in range(3)] == [598, 597, 596]
        assert time.monotonic() - started < 2 and b.fallbacks() == 4

        with redis_server(tmp_path / "redis-again", port):  # back (empty), on the same address
            await asyncio.sleep(2.1)  # the pause after a failure, before Redis is tried again
            assert [await a.remaining(), await b.remaining()] == [599, 598]  # one budget again
            assert a.fallbacks() == 5 and b.fallbacks() == 4


def test_two_served_replicas_and_a_key_from_the_cli(tmp_path: Path, stub_url: str) -> None:
    config = tmp_path / "railguard.yaml"
    config.write_text(yaml.safe_dump({
        "policy_file": str(ROOT / "tests" / "data" / "policy.yaml"),
        "classifiers": {"enabled": False},
        "keys_file": str(tmp_path / "keys.json"),
        "tenants": {"acme": {"requests_per_minute": 3}},
    }))  # fmt: skip
    created = subprocess.run(
        [*RAILGUARD, "keys", "create", "--config", str(config), "--tenant", "acme"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = created.stdout.strip()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with redis_server(tmp_path / "redis") as url:
        extra = ["--upstream", stub_url, "--redis-url", url]
        with (
            serve(config, cache_dir=tmp_path / "a", extra=extra) as a,
            serve(config, cache_dir=tmp_path / "b", extra=extra) as b,
        ):
            clients = [openai.OpenAI(base_url=f"{u}/v1", api_key=key, max_retries=0) for u in (a, b, a, b)]
            left = []
            for client in clients[:3]:
                raw = client.chat.completions.with_raw_response.create(model="stub-model", messages=HELLO)
                left.append(raw.headers["x-ratelimit-remaining-requests"])
            assert left == ["2", "1", "0"]
            with pytest.raises(openai.RateLimitError) as refused:
                clients[3].chat.completions.create(model="stub-model", messages=HELLO)
            assert refused.value.status_code == 429 and refused.value.code == "rate_limit_exceeded"
            assert refused.value.type == "requests"
            assert 1 <= int(refused.value.response.headers["retry-after"]) <= 20
            for client in clients:
                client.close()
