"""Graceful drain: on SIGTERM, stop taking requests, let those in flight finish, then exit.

From the signal on, `/readyz` answers 503 (a load balancer or Kubernetes stops sending traffic) and new
chat requests get a 503 with `Retry-After`. Requests in flight have `drain_s` seconds to finish; a stream
still open at the deadline ends with an SSE error event and `[DONE]`, so the client learns why instead
of reading a cut connection. Then the server stops (uvicorn's own shutdown, with nothing left to wait for).
A second SIGINT/SIGTERM stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

import anyio

from gateway.chat.answers import DONE, error_event
from gateway.errors import ServiceUnavailableError

log = logging.getLogger(__name__)


class Drain:
    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.draining = False
        self.deadline: float | None = None
        self._expired: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._expired is None:
            self._expired = asyncio.Event()
        return self._expired

    def begin(self) -> None:
        if not self.draining:
            self.draining = True
            self.deadline = time.monotonic() + self.drain_s
            log.info("draining: no new requests; %.0f s for those in flight", self.drain_s)

    async def wait(self, in_flight: Callable[[], int]) -> None:
        """Until nothing is in flight or the deadline; at the deadline, open streams are ended."""
        assert self.deadline is not None
        while in_flight() and time.monotonic() < self.deadline:
            await asyncio.sleep(0.05)
        if in_flight():
            log.warning("drain deadline: ending %d requests still in flight", in_flight())
            self._event().set()
            for _ in range(40):  # up to 2 s for the streams to write their error event
                if not in_flight():
                    break
                await asyncio.sleep(0.05)

    async def guard(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``stream``, ended with an error event and ``[DONE]`` if the drain deadline comes first."""
        expired = asyncio.ensure_future(self._event().wait())
        iterator = stream.__aiter__()
        step: asyncio.Future[bytes] | None = None
        try:
            while True:
                step = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({step, expired}, return_when=asyncio.FIRST_COMPLETED)
                if step in done:
                    try:
                        yield step.result()
                    except StopAsyncIteration:
                        return
                    continue
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await step
                yield _error_event()
                yield DONE
                return
        finally:
            expired.cancel()
            with anyio.CancelScope(shield=True):  # this generator may be being cancelled (a client gone)
                if step is not None and not step.done():  # the stream is mid-step: stop it there
                    step.cancel()
                    await asyncio.wait({step})
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()


def _error_event() -> bytes:
    message = "The server is shutting down: this answer was cut at the drain deadline. Retry it."
    return error_event(ServiceUnavailableError(message, code="server_shutting_down"))


def serve(config: Any, drain: Drain, in_flight: Callable[[], int]) -> None:
    """Run uvicorn with the drain in front of its shutdown."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if drain.draining or sig not in (signal.SIGTERM, signal.SIGINT):
                super().handle_exit(sig, frame)  # a second signal: uvicorn's own (immediate) shutdown
                self.force_exit = True
                return
            drain.begin()
            loop = asyncio.get_event_loop()
            loop.call_soon_threadsafe(lambda: loop.create_task(self._drain_then_exit(sig, frame)))

        async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
            await drain.wait(in_flight)
            super().handle_exit(sig, frame)

    DrainingServer(config).run()
