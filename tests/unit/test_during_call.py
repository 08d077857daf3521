"""`input_guard: during_call`: in front of an upstream, the model's call starts while the classifiers
judge the prompt; a refused prompt's call is cancelled (its stream closed), and a prompt that anything
would redact or a rule would refuse waits for the guard as before, so the model never sees it raw."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.backends.base import Generation, ModelCard
from gateway.policy.verdict import Finding, Stage
from gateway.settings import Settings

pytestmark = pytest.mark.anyio

REPLY = "Hello there."


class FakeUpstream:
    """An upstream that records what it was sent and whether its call was cancelled or closed. Prompts
    with "slow" never answer on their own: only cancellation ends them."""

    name = "upstream"

    def __init__(self) -> None:
        self.called = threading.Event()
        self.sent: list[list[dict[str, Any]]] = []
        self.cancelled = 0
        self.closed = 0

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    async def ready(self) -> bool:
        return True

    def models(self) -> list[ModelCard]:
        return [ModelCard("fake", "fake", 0, self.name)]

    async def _arrive(self, generation: Generation) -> None:
        self.sent.append(generation.messages)
        self.called.set()
        if "slow" in str(generation.messages):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    async def complete(self, generation: Generation) -> dict[str, Any]:
        await self._arrive(generation)
        message = {"role": "assistant", "content": REPLY}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }

    async def open_stream(self, generation: Generation) -> AsyncIterator[dict[str, Any]]:
        if "hold" not in str(generation.messages):
            await self._arrive(generation)
        return _Events(self)


class _Events:
    """The upstream's open stream: two chunks; `aclose` (what a gateway calls to hang up) is counted."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        deltas = (({"role": "assistant", "content": REPLY}, None), ({}, "stop"))
        self.chunks = [
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "fake",
                "choices": [{"index": 0, "delta": d, "finish_reason": f, "logprobs": None}],
            }
            for d, f in deltas
        ]

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

    async def aclose(self) -> None:
        self.upstream.closed += 1


class WatchingGuard:
    """A blocking classifier that refuses "bomb" and finds e-mail addresses, and notes whether the
    upstream had been called while it was judging the prompt."""

    name = "classifiers"
    blocking = True

    def __init__(self, upstream: FakeUpstream, wait_s: float) -> None:
        self.upstream = upstream
        self.wait_s = wait_s
        self.overlapped: list[bool] = []

    def prescreen(self, text: str, stage: Stage, language: str) -> tuple[Finding, ...]:
        found = re.search(r"\S+@\S+\.\w+", text)
        return () if found is None else (Finding("pii", 1.0, "pii:email", found.span(), 0.5),)

    def check(self, text: str, stage: Stage, language: str) -> tuple[Finding, ...]:
        if stage is Stage.INPUT:
            self.overlapped.append(self.upstream.called.wait(self.wait_s))
        found = [Finding("unsafe", 0.99 if "bomb" in text else 0.01, "classifier", None, 0.5)]
        return (*found, *self.prescreen(text, stage, language))


async def _gateway(
    tmp_path: Path, mode: str, wait_s: float = 2.0, backend: str = "upstream"
) -> AsyncIterator[tuple[openai.AsyncOpenAI, FakeUpstream, WatchingGuard]]:
    settings = Settings.load(
        upstream={"url": "http://127.0.0.1:9/v1"},
        cache_dir=tmp_path,
        input_guard=mode,
        classifiers={"timeout_s": 10},
    )
    upstream = FakeUpstream()
    upstream.name = backend
    guard = WatchingGuard(upstream, wait_s)
    app = create_app(settings, backends=[upstream], guards=[guard], registry=CollectorRegistry())
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="x", http_client=http, max_retries=0)
        yield client, upstream, guard
        await http.aclose()


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_call_starts_while_the_guard_judges(tmp_path: Path, stream: bool) -> None:
    async for client, upstream, guard in _gateway(tmp_path, "during_call"):
        if stream:
            chunks = await client.chat.completions.create(
                model="fake", messages=_user("Say hello."), stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in chunks])
        else:
            r = await client.chat.completions.create(model="fake", messages=_user("Say hello."))
            text = r.choices[0].message.content or ""
        assert text == REPLY
        assert guard.overlapped == [True]  # the upstream had the request before the guard was done
        assert upstream.sent == [_user("Say hello.")] and upstream.cancelled == 0


async def test_a_refused_prompts_call_is_cancelled(tmp_path: Path) -> None:
    async for client, upstream, guard in _gateway(tmp_path, "during_call"):
        r = await asyncio.wait_for(
            client.chat.completions.create(model="fake", messages=_user("slow: how to build a bomb")), 10
        )
        assert r.choices[0].finish_reason == "content_filter"
        assert r.model_extra and r.model_extra["railguard"]["action"] == "refuse"
        assert guard.overlapped == [True] and upstream.cancelled == 1  # started, then stopped


async def test_a_refused_prompts_opened_stream_is_closed(tmp_path: Path) -> None:
    async for client, upstream, _ in _gateway(tmp_path, "during_call"):
        r = await client.chat.completions.create(model="fake", messages=_user("a bomb, please"), stream=True)
        chunks = [c async for c in r]
        assert chunks[-1].choices[0].finish_reason == "content_filter"
        assert REPLY not in "".join(c.choices[0].delta.content or "" for c in chunks)
        assert upstream.closed == 1  # the upstream's stream was opened during the guard, and closed


async def test_what_would_be_redacted_waits_for_the_guard(tmp_path: Path) -> None:
    async for client, upstream, guard in _gateway(tmp_path, "during_call", wait_s=0.3):
        r = await client.chat.completions.create(model="fake", messages=_user("Write to ann@x.org now."))
        assert r.choices[0].message.content == REPLY
        assert guard.overlapped == [False]  # not called until the guard had judged
        [messages] = upstream.sent
        assert messages == _user("Write to [PII] now.")


async def test_a_rule_refusal_never_reaches_the_upstream(tmp_path: Path) -> None:
    async for client, upstream, _ in _gateway(tmp_path, "during_call", wait_s=0.3):
        r = await client.chat.completions.create(
            model="fake", messages=_user("Explain how to synthesize sarin step by step.")
        )
        assert r.choices[0].finish_reason == "content_filter"
        assert upstream.sent == []


async def test_before_call_is_the_default_and_waits(tmp_path: Path) -> None:
    assert Settings(upstream={"url": "http://127.0.0.1:9/v1"}).input_guard == "before_call"
    async for client, upstream, guard in _gateway(tmp_path, "before_call", wait_s=0.3):
        r = await client.chat.completions.create(model="fake", messages=_user("Say hello."))
        assert r.choices[0].message.content == REPLY
        assert guard.overlapped == [False] and len(upstream.sent) == 1


async def test_a_local_model_waits_for_the_guard(tmp_path: Path) -> None:
    """A local model may have to be steered by the verdict: it is never called before it."""
    async for client, upstream, guard in _gateway(tmp_path, "during_call", wait_s=0.3, backend="local"):
        r = await client.chat.completions.create(model="fake", messages=_user("Say hello."))
        assert r.choices[0].message.content == REPLY
        assert guard.overlapped == [False] and len(upstream.sent) == 1


async def test_an_abandoned_upstream_stream_hangs_up_before_its_first_event(stub_url: str) -> None:
    """What `_abandon` closes: the real upstream backend's stream, opened but never read, releases its
    response at once (a never-started generator would not), so the upstream stops generating."""
    import aiohttp

    from gateway.backends.upstream import EventStream

    body = {"model": "stub-model", "messages": _user("say: one two three"), "stream": True}
    async with aiohttp.ClientSession() as session:
        abandoned = await session.post(f"{stub_url}/chat/completions", json=body)
        await EventStream(abandoned).aclose()
        assert abandoned.closed
        read = await session.post(f"{stub_url}/chat/completions", json=body)
        events = EventStream(read)
        words = [e["choices"][0]["delta"].get("content", "") async for e in events]
        assert "".join(words).split() == ["one", "two", "three"]
        await events.aclose()
        assert read.closed
