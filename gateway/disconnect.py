"""Stop work for a client that has gone away.

Starlette cancels a streamed response when its client disconnects, but a plain handler runs to its
end: a non-streamed completion would keep the model generating (and, on the local model, keep the
requests queued behind its batch waiting) for an answer nobody reads. `cancel_on_disconnect` races
the work against the connection, as vLLM's `with_cancellation` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import Request

__all__ = ["ClientDisconnected", "cancel_on_disconnect"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before the answer was ready; the work was cancelled."""


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it, let it clean up, and raise
    `ClientDisconnected`. Call once the request's body has been read."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # its own cleanup (cancel the model call, record the request)
    if task.cancelled():
        raise ClientDisconnected
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
