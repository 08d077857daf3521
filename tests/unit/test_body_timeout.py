"""`BodyReadTimeout` in process: a body that stalls past the bound gets one 408 in OpenAI's shape with
`connection: close`, whatever the app answers; a body in time, and the wait for a disconnect after it,
are not timed. Through the gateway app, the chat route counts the 408 and frees the key's slot, and a
client gone mid-body is a quiet 499. A real server and raw sockets: tests/integration/test_slow_clients.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import Settings
from gateway.slow_clients import BodyReadTimeout

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
SCOPE = {"type": "http", "method": "POST", "path": "/echo", "headers": [], "query_string": b""}


def _receiver(*messages: Message, then: Message | None = None) -> Callable[[], Awaitable[Message]]:
    """Gives `messages`, then `then` (or waits forever, as a client that stalls)."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if then is None:
            await asyncio.sleep(3600)
        assert then is not None
        return then

    return receive


async def _run(app: Any, receive: Callable[[], Awaitable[Message]], scope: Message = SCOPE) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    return sent


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Reads the body, answers 200, then waits for the client to go (as a streaming route does)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_a_stalled_body_gets_one_408_in_openais_shape() -> None:
    app = BodyReadTimeout(echo, timeout_s=0.2)
    started = time.monotonic()
    sent = await _run(app, _receiver({"type": "http.request", "body": b"{", "more_body": True}))
    assert 0.15 < time.monotonic() - started < 1.0
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    error = orjson.loads(sent[1]["body"])["error"]
    assert error == {
        "message": "The request body was not received within 0.2 seconds.",
        "type": "invalid_request_error",
        "param": None,
        "code": "request_timeout",
    }


async def test_a_trickled_body_is_cut_at_the_bound_not_reset_by_each_byte() -> None:
    async def trickle() -> Message:
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b" ", "more_body": True}

    started = time.monotonic()
    sent = await _run(BodyReadTimeout(echo, timeout_s=0.3), trickle)
    assert 0.25 < time.monotonic() - started < 1.0 and sent[0]["status"] == 408


async def test_whatever_the_app_answers_after_the_timeout_is_dropped() -> None:
    async def converts(scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()
            await receive()
        except Exception:  # e.g. a framework that turns a failed body read into its own 400
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"bad body"})

    sent = await _run(
        BodyReadTimeout(converts, timeout_s=0.1), _receiver({"type": "http.request", "more_body": True})
    )
    assert [m.get("status") for m in sent] == [408, None] and b"request_timeout" in sent[1]["body"]


async def test_a_body_in_time_and_the_wait_after_it_are_not_timed() -> None:
    async def waits_for_disconnect(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        assert (await receive())["type"] == "http.disconnect"  # comes after the bound: not a timeout
        await send({"type": "http.response.body", "body": b"done"})

    async def late_disconnect() -> Message:
        await asyncio.sleep(0.3)
        return {"type": "http.disconnect"}

    queue = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> Message:
        return queue.pop(0) if queue else await late_disconnect()

    sent = await _run(BodyReadTimeout(waits_for_disconnect, timeout_s=0.1), receive)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"done"


async def test_other_errors_pass_through() -> None:
    async def fails(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await _run(BodyReadTimeout(fails, timeout_s=1.0), _receiver())


def _samples(registry: CollectorRegistry, status: str) -> float:
    [family] = [m for m in registry.collect() if m.name == "railguard_requests"]
    return sum(s.value for s in family.samples if s.name.endswith("_total") and s.labels["status"] == status)


async def test_the_chat_route_counts_the_408_and_the_499_and_frees_the_keys_slot(
    tmp_path: Path, stub_url: str
) -> None:
    settings = Settings.load(
        upstream={"url": stub_url},
        cache_dir=tmp_path,
        classifiers={"enabled": False},
        limits={"body_read_timeout_s": 0.2, "max_concurrency": 1},
    )
    registry = CollectorRegistry()
    app = create_app(settings, registry=registry)
    scope = {**SCOPE, "path": "/v1/chat/completions", "headers": [(b"content-type", b"application/json")]}
    start = {"type": "http.request", "body": b'{"model": ', "more_body": True}
    async with app.router.lifespan_context(app):
        stalled = await _run(app, _receiver(start), scope)
        gone = await _run(app, _receiver(start, then={"type": "http.disconnect"}), scope)
        body = orjson.dumps({"model": "stub-model", "messages": [{"role": "user", "content": "say: ok"}]})
        answered = await _run(app, _receiver({"type": "http.request", "body": body}), scope)
    assert stalled[0]["status"] == 408 and gone[0]["status"] == 499
    assert answered[0]["status"] == 200  # one request in flight allowed: neither kept its slot
    assert _samples(registry, "408") == 1 and _samples(registry, "499") == 1
