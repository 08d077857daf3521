"""Rate limits per API key, in process: the official openai client over httpx.ASGITransport into the
gateway, which calls the real stub upstream. OpenAI's x-ratelimit-* headers on every answer of a
limited key, decreasing; a 429 in OpenAI's shape with Retry-After past the limit; nothing for keys
without limits. (Shared through Redis: tests/integration/test_ratelimit_redis.py.)"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.moderations.serving import ModerationService
from gateway.ratelimit import Budget, LocalBuckets, RateLimiter, chat_tokens, duration, moderation_tokens
from gateway.settings import Settings

pytestmark = pytest.mark.anyio

KEY_RPM = "sk-limited-requests-01"
KEY_TPM = "sk-limited-tokens-0001"
KEY_FREE = "sk-unlimited-key-0001"
HELLO = [{"role": "user", "content": "say: Hello there."}]
RESET = re.compile(r"^(\d+m)?(\d+(\.\d+)?s|\d+ms)$")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeScores:
    scores: dict[str, float] = field(default_factory=lambda: {"unsafe": 0.01})
    pii: tuple[Any, ...] = ()
    thresholds: dict[str, float] = field(default_factory=dict)
    language: str = "en"


class FakeClassifier:
    def score(self, texts: Any, language: str | None = None) -> list[FakeScores]:
        return [FakeScores() for _ in texts]


@dataclass
class FakeGuard:
    classifier: FakeClassifier = field(default_factory=FakeClassifier)


@pytest.fixture
async def gateway(tmp_path: Path, test_policy_path: Path, stub_url: str) -> AsyncIterator[dict[str, Any]]:
    settings = Settings.load(
        upstream={"url": stub_url, "timeout_s": 30},
        policy_file=test_policy_path,
        cache_dir=tmp_path,
        classifiers={"enabled": False},
        limits={"reserved_completion_tokens": 50},
        tenants={
            "rpm": {"api_keys": [KEY_RPM], "requests_per_minute": 3},
            "tpm": {"api_keys": [KEY_TPM], "tokens_per_minute": 100},
            "free": {"api_keys": [KEY_FREE]},
        },
    )
    app = create_app(settings, registry=CollectorRegistry())
    clock = Clock()
    services = app.state.services
    services.rate_limits = RateLimiter(settings, LocalBuckets(clock))  # time under the test's control
    services.moderations = ModerationService(FakeGuard(), ThreadPoolExecutor(1))
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")

        def client(key: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url="http://gw/v1", api_key=key, http_client=http, max_retries=0)

        yield {"client": client, "clock": clock, "http": http}
        await http.aclose()


async def test_headers_on_every_answer_decrease_then_a_429_with_retry_after(gateway: dict[str, Any]) -> None:
    client = gateway["client"](KEY_RPM)
    remaining = []
    for _ in range(3):
        raw = await client.chat.completions.with_raw_response.create(model="stub-model", messages=HELLO)
        assert raw.parse().choices[0].message.content == "Hello there."
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert RESET.match(raw.headers["x-ratelimit-reset-requests"]), raw.headers
        assert "x-ratelimit-limit-tokens" not in raw.headers  # only the limits the tenant sets
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model="stub-model", messages=HELLO)
    response = refused.value.response
    assert response.status_code == 429
    assert response.json() == {
        "error": {
            "message": response.json()["error"]["message"],
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert "requests per min (RPM): Limit 3" in response.json()["error"]["message"]
    assert response.headers["retry-after"] == "20"  # one request refills in 60 s / 3
    assert response.headers["x-ratelimit-remaining-requests"] == "0"

    gateway["clock"].now += 20  # the bucket refilled one request
    again = await client.chat.completions.with_raw_response.create(model="stub-model", messages=HELLO)
    assert again.headers["x-ratelimit-remaining-requests"] == "0"


async def test_streams_and_errors_after_the_check_carry_the_headers_too(gateway: dict[str, Any]) -> None:
    client = gateway["client"](KEY_RPM)
    async with client.chat.completions.with_streaming_response.create(
        model="stub-model", messages=HELLO, stream=True
    ) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "2"
        assert "".join([line async for line in streamed.iter_lines()]).endswith("[DONE]")
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert unknown.value.response.headers["x-ratelimit-remaining-requests"] == "1"
    with pytest.raises(openai.BadRequestError) as invalid:  # invalid requests count, as at OpenAI
        await client.chat.completions.create(model="stub-model", messages=[{"role": "user"}])
    assert invalid.value.response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_tokens_are_the_prompt_estimate_plus_the_completion_reserved(gateway: dict[str, Any]) -> None:
    client = gateway["client"](KEY_TPM)
    prompt = [{"role": "user", "content": "x" * 40}]  # 10 tokens by the estimate
    raw = await client.chat.completions.with_raw_response.create(
        model="stub-model", messages=prompt, max_tokens=30
    )
    assert raw.headers["x-ratelimit-limit-tokens"] == "100"
    assert raw.headers["x-ratelimit-remaining-tokens"] == "60"
    assert raw.headers["x-ratelimit-reset-tokens"] == "24s"  # 40 tokens at 100 per minute
    assert "x-ratelimit-limit-requests" not in raw.headers
    raw = await client.chat.completions.with_raw_response.create(model="stub-model", messages=prompt)
    assert raw.headers["x-ratelimit-remaining-tokens"] == "0"  # 10 + the 50 reserved by default
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model="stub-model", messages=prompt, max_completion_tokens=5)
    error = refused.value.response.json()["error"]
    assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded" and error["param"] is None
    assert refused.value.response.headers["retry-after"] == "9"  # 15 tokens at 100 per minute


async def test_a_request_that_can_never_fit_is_refused_without_retry_after(gateway: dict[str, Any]) -> None:
    client = gateway["client"](KEY_TPM)
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model="stub-model", messages=HELLO, max_tokens=500)
    response = refused.value.response
    assert response.json()["error"]["type"] == "tokens"
    assert "Request too large" in response.json()["error"]["message"]
    assert "retry-after" not in response.headers
    assert response.headers["x-ratelimit-remaining-tokens"] == "100"  # nothing was taken


async def test_keys_without_limits_get_no_headers(gateway: dict[str, Any]) -> None:
    client = gateway["client"](KEY_FREE)
    for _ in range(5):
        raw = await client.chat.completions.with_raw_response.create(model="stub-model", messages=HELLO)
        assert not [h for h in raw.headers if h.startswith("x-ratelimit")]
    moderated = await client.moderations.with_raw_response.create(input="hello")
    assert not [h for h in moderated.headers if h.startswith("x-ratelimit")]


async def test_moderations_spend_the_same_budget(gateway: dict[str, Any]) -> None:
    client = gateway["client"](KEY_RPM)
    raw = await client.moderations.with_raw_response.create(input="hello")
    assert raw.parse().results[0].flagged is False
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"
    await client.chat.completions.create(model="stub-model", messages=HELLO)
    await client.moderations.create(input=["a", "b"])
    with pytest.raises(openai.RateLimitError) as refused:
        await client.moderations.create(input="hello")
    assert refused.value.response.headers["retry-after"] == "20"


async def test_limits_of_the_default_tenant_apply_when_auth_is_off(tmp_path: Path, stub_url: str) -> None:
    settings = Settings.load(
        upstream={"url": stub_url}, cache_dir=tmp_path, classifiers={"enabled": False},
        tenants={"default": {"requests_per_minute": 1}},
    )  # fmt: skip
    app = create_app(settings, registry=CollectorRegistry())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as http,
    ):
        body = {"model": "stub-model", "messages": HELLO}
        first = await http.post("/v1/chat/completions", json=body)
        second = await http.post("/v1/chat/completions", json=body)
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.status_code == 429 and int(second.headers["retry-after"]) == 60


async def test_local_buckets_refill_continuously_up_to_the_limit() -> None:
    clock = Clock()
    buckets = LocalBuckets(clock)
    budget = Budget(requests_per_minute=60, tokens_per_minute=600)
    first = await buckets.take("k", budget, 600)
    assert first.taken and first.requests == 59 and first.tokens == 0
    assert not (await buckets.take("k", budget, 1)).taken  # no tokens left: the request is not taken
    clock.now += 0.5
    refused = await buckets.take("k", budget, 10)
    assert not refused.taken and refused.requests == 59.5 and refused.tokens == pytest.approx(5)
    clock.now += 3600
    full = await buckets.take("k", budget, 0)
    assert full.requests == 59 and full.tokens == 600  # capped at the limit
    assert (await buckets.take("other", budget, 1)).requests == 59  # one bucket per key
    unlimited = await buckets.take("u", Budget(tokens_per_minute=10), 1)
    assert unlimited.taken and math.isinf(unlimited.requests)


def test_estimates_and_durations() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "a" * 8},
            {"role": "user", "content": [{"type": "text", "text": "b" * 7}, {"type": "image_url"}]},
            "junk",
        ],
        "max_tokens": 20,
        "n": 2,
    }
    assert chat_tokens(body, reserved=256) == 4 + 40
    assert chat_tokens({"messages": "x", "max_tokens": True, "n": "3"}, reserved=7) == 7
    assert chat_tokens({"max_completion_tokens": 5, "max_tokens": 9}, reserved=0) == 5
    assert moderation_tokens({"input": ["abcd", {"type": "text", "text": "efgh"}, 3]}) == 2
    assert moderation_tokens({"input": None}) == 0
    assert [duration(s) for s in (0, 0.02, 1, 1.5, 59.9999, 60, 360, 62.5)] == [
        "0ms", "20ms", "1s", "1.5s", "1m0s", "1m0s", "6m0s", "1m2.5s",
    ]  # fmt: skip
