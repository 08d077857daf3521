"""A client that goes away stops the work done for it: a real uvicorn server in front of the local
backend (the tiny random-weight model, slowed to ~4 ms a forward pass so that a long answer takes
seconds), and a raw httpx client that gives up on a non-streamed completion after 0.3 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.backends.local import LocalBackend
from gateway.backends.local.loader import LoadedModel
from gateway.backends.local.testing import tiny_loaded
from gateway.drain import Drain
from gateway.settings import LocalModelConfig, Settings
from tests.servers import free_port

pytestmark = pytest.mark.anyio

CONFIG = LocalModelConfig(batch_wait_ms=0, max_context_tokens=1024)
MAX_TOKENS = 900  # ~4 s of decoding at the slowed pace
NO_STOP = {"1": -100, "5": -100}  # the tiny model's <eos> and <end_of_turn>: it never stops


def slow_loaded() -> LoadedModel:
    loaded = tiny_loaded()
    loaded.model.register_forward_pre_hook(lambda *_: time.sleep(0.004))
    return loaded


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    settings = Settings.load(
        local=CONFIG.model_dump(),
        cache_dir=tmp_path,
        classifiers={"enabled": False},
        tenants={"solo": {"api_keys": ["sk-solo-0001"], "max_concurrency": 1}},
    )
    backend = LocalBackend(CONFIG, tmp_path, loader=slow_loaded)
    registry = CollectorRegistry()
    app = create_app(settings, backends=[backend], registry=registry)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.ensure_future(server.serve())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(300):
            try:
                if (await client.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        yield {"client": client, "backend": backend, "registry": registry}
    server.should_exit = True
    await task


async def _settled(read: Any, quiet_s: float = 0.5, within_s: float = 20.0) -> int:
    """`read()` once it has stopped changing for `quiet_s`."""
    deadline = time.monotonic() + within_s
    last, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return int(now)
    raise AssertionError(f"still changing after {within_s} s: {last}")


async def test_a_client_that_leaves_a_completion_stops_its_generation(served: dict[str, Any]) -> None:
    client: httpx.AsyncClient = served["client"]
    stats = served["backend"].engine.stats
    body = {
        "model": CONFIG.name,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": MAX_TOKENS,
        "logit_bias": NO_STOP,
    }
    headers = {"authorization": "Bearer sk-solo-0001"}  # a tenant allowed one request at a time
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/chat/completions", json=body, headers=headers, timeout=0.3)
    steps = await _settled(lambda: stats.decode_row_steps)
    assert 0 < steps < MAX_TOKENS // 2, steps  # cut short, not run to max_tokens

    def closed() -> float:
        [family] = [m for m in served["registry"].collect() if m.name == "railguard_requests"]
        return sum(
            s.value
            for s in family.samples
            if s.name.endswith("_total") and s.labels["status"] == "499" and s.labels["tenant"] == "solo"
        )

    assert await _settled(closed) == 1
    # its concurrency slot is free again: the tenant's next request is answered
    r = await client.post("/v1/chat/completions", json={**body, "max_tokens": 3}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 3


async def test_a_stream_cancelled_while_waiting_for_its_next_event_is_closed_at_once() -> None:
    """Starlette cancels a streamed response when its client leaves, mostly while the stream waits
    for its next event: the stream must end then (its request recorded as a 499, its slot freed), not
    whenever the garbage collector finds it."""
    closed = asyncio.Event()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await asyncio.sleep(30)  # the model's next token
            yield b"second"
        finally:
            closed.set()

    guarded = Drain(30.0).guard(events())
    assert await guarded.__anext__() == b"first"
    waiting = asyncio.ensure_future(guarded.__anext__())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert closed.is_set()
