"""Bounded time for a client to send its request: slowloris clients are cut off, not waited for.

Two clocks, one per phase of a request:

* **Headers** (`limits.header_read_timeout_s`, `limits.max_header_bytes`): from the connection's opening,
  or the end of the previous answer on a kept-alive connection, to the request's last header byte.
  uvicorn has no such clock (its `timeout_keep_alive` only closes connections that send nothing at all),
  so `header_timeout_protocol` adds one to uvicorn's httptools protocol: a client that began a request
  gets a 408 (a 431 past the size limit) and the connection is closed; one that sent nothing is closed.
  It also bounds the unread rest of a body the app answered without reading (a 401, a 404).
* **Body** (`limits.body_read_timeout_s`): from the last header byte to the body's last byte, whether the
  body stalls or trickles. `BodyReadTimeout` is ASGI middleware, so it holds under any server: the app's
  read raises `RequestTimeoutError` (the chat route counts and records it), whatever the app then
  answers is dropped, and the client gets one 408 in OpenAI's shape with `connection: close`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from gateway.errors import InvalidRequestError, RailguardError, RequestTimeoutError, render
from gateway.settings import LimitsConfig

__all__ = ["BodyReadTimeout", "header_timeout_protocol"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _error_json(error: RailguardError) -> bytes:
    return orjson.dumps(render(error))


class BodyReadTimeout:
    """ASGI middleware: the request body must arrive within `timeout_s` of the app being called."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        state = {"body_done": False, "timed_out": False, "started": False}

        async def receive_in_time() -> Message:
            if state["body_done"]:
                return await receive()  # waiting for a disconnect is not reading the body
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                state["timed_out"] = True
                raise self._error() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def send_unless_timed_out(message: Message) -> None:
            if state["timed_out"]:
                return  # the one answer is ours, below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, receive_in_time, send_unless_timed_out)
        except Exception:
            if not state["timed_out"]:
                raise
        if state["timed_out"] and not state["started"]:
            body = _error_json(self._error())
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 408, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def _error(self) -> RequestTimeoutError:
        return RequestTimeoutError(
            f"The request body was not received within {self.timeout_s:g} seconds.",
            headers={"connection": "close"},
        )


def _too_large(max_bytes: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"The request line and headers are larger than {max_bytes} bytes.",
        code="request_header_fields_too_large",
    )


def header_timeout_protocol(limits: LimitsConfig) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a clock and a size limit on each request's headers; pass it
    as `uvicorn.Config(http=...)`."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    timeout_s = limits.header_read_timeout_s
    max_bytes = limits.max_header_bytes

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._header_timer: asyncio.TimerHandle | None = None
            self._in_headers = False  # a request has begun and its headers have not all arrived
            self._header_bytes = 0  # bytes received while they had not
            self._refused = False  # answered here and closing: the parser's further events are dropped

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            if self._in_headers and not self.transport.is_closing():
                self._header_bytes += len(data)  # a head still incomplete: bound what it may buffer
                if self._header_bytes > max_bytes:
                    self._refuse(431, "Request Header Fields Too Large", _too_large(max_bytes))

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = 0

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            self._in_headers = False
            self._disarm()  # the body's clock (BodyReadTimeout) runs from here
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > max_bytes:  # a head that came whole in one read
                self._refuse(431, "Request Header Fields Too Large", _too_large(max_bytes))
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._refused:
                super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            idle = self.cycle is None or self.cycle.response_complete  # no request waits its turn
            if idle and not self.transport.is_closing():
                self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if not self._in_headers:  # nothing begun, or the rest of a body nobody reads: just close
                self.transport.close()
                return
            error = RequestTimeoutError(
                f"The request headers were not received within {timeout_s:g} seconds."
            )
            self._refuse(408, "Request Timeout", error)

        def _refuse(self, status: int, reason: str, error: RailguardError) -> None:
            body = _error_json(error)
            head = (
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
            )
            self._refused = True
            self._in_headers = False
            self._disarm()
            self.transport.write(head.encode("ascii") + body)
            self.transport.close()

    return HeaderTimeoutProtocol
