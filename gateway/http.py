"""What the HTTP routers share: the services the app built (`app.state.services`), JSON answers, and
server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from gateway.app import Services

__all__ = ["EventStreamResponse", "json_response", "services_of"]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` whose events are closed when the response ends, however it ends. Starlette
    stops reading them when the client goes away but leaves closing them to the garbage collector,
    and with them the request's record (a 499) and its in-flight slot."""

    def __init__(self, events: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=headers)
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self._events, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()
