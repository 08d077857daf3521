"""A lean keep-alive HTTP/1.1 client for the load benchmarks, and their percentiles.

asyncio + uvloop + httptools, ~20 us of CPU per request, rather than httpx (~250 us per request): on a
2-core machine the client must not compete with what it measures. `HttpxConnection` offers the same
interface over httpx, to compare the client's own cost. `bench/overhead.py` and `bench/soak.py` share it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
import orjson

PATH = "/v1/chat/completions"

Opener = Callable[[int], Awaitable[Any]]


def chat_request_bytes(port: int, body: dict[str, Any]) -> bytes:
    """A whole chat-completions request (head and JSON body), ready to write to a connection."""
    payload = orjson.dumps(body)
    stream = bool(body.get("stream"))
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: {'text/event-stream' if stream else 'application/json'}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def first_content(event: bytes) -> bool:
    if not event.startswith(b"data: ") or event.startswith(b"data: [DONE]"):
        return False
    data = orjson.loads(event[6:])
    return any((c.get("delta") or {}).get("content") for c in data.get("choices") or ())


class Connection(asyncio.Protocol):
    """One keep-alive connection; `request` sends pre-built bytes and awaits the whole response.

    `headers` holds the last response's `x-request-id` and `x-railguard-action` (lower-case names);
    `closed` says the peer (or we) closed the connection, `last_used` when its last response ended."""

    KEPT_HEADERS = (b"x-request-id", b"x-railguard-action")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.body = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.scanned = 0
        self.sse = False
        self.first_content_at: float | None = None
        self.closed = False
        self.last_used = time.perf_counter()

    @classmethod
    async def open(cls, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, "127.0.0.1", port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in self.KEPT_HEADERS:
            self.headers[name] = value

    def on_body(self, body: bytes) -> None:
        self.body += body
        if self.sse and self.first_content_at is None:
            while (end := self.body.find(b"\n\n", self.scanned)) >= 0:
                event = bytes(self.body[self.scanned : end])
                self.scanned = end + 2
                if first_content(event):
                    self.first_content_at = time.perf_counter()
                    break

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def request(self, payload: bytes, sse: bool) -> tuple[float, float | None, int, bytes]:
        assert self.transport is not None
        if self.closed:
            raise ConnectionError("connection closed")
        self.body.clear()
        self.headers.clear()
        self.scanned = 0
        self.sse = sse
        self.first_content_at = None
        self.waiter = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        self.transport.write(payload)
        await self.waiter
        self.last_used = time.perf_counter()
        elapsed = self.last_used - started
        ttft = None if self.first_content_at is None else self.first_content_at - started
        return elapsed, ttft, self.parser.get_status_code(), bytes(self.body)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpxConnection:
    """The same interface over httpx (`--client httpx`), to compare the client's own cost."""

    def __init__(self, port: int) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)

    @classmethod
    async def open(cls, port: int) -> HttpxConnection:
        return cls(port)

    async def request(self, payload: bytes, sse: bool) -> tuple[float, float | None, int, bytes]:
        body = payload.split(b"\r\n\r\n", 1)[1]
        headers = {"content-type": "application/json"}
        started = time.perf_counter()
        ttft = None
        async with self.client.stream("POST", PATH, content=body, headers=headers) as response:
            chunks = []
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                if sse and ttft is None:
                    events = b"".join(chunks).split(b"\n\n")[:-1]
                    if any(first_content(e) for e in events):
                        ttft = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        return elapsed, ttft, response.status_code, b"".join(chunks)

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self.client.aclose())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": pct(values, 50) * 1000,
        "p99": pct(values, 99) * 1000,
        "mean": statistics.fmean(values) * 1000,
        "n": len(values),
    }
