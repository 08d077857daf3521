"""The upstream backend: any OpenAI-compatible server (vLLM, TGI, Ollama, OpenAI).

One shared `httpx.AsyncClient` for all requests. Connect failures are retried by the transport (the request
never left, so a retry is safe); nothing else is retried, since a completion is not idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.backends.base import Generation, ModelCard
from gateway.errors import (
    RailguardError,
    UpstreamError,
    UpstreamRejectedError,
    UpstreamTimeoutError,
)
from gateway.settings import UpstreamConfig

log = logging.getLogger(__name__)

_MODELS_TTL_S = 30.0


class UpstreamBackend:
    name = "upstream"

    def __init__(self, config: UpstreamConfig, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=config.url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            transport=transport or httpx.AsyncHTTPTransport(retries=config.connect_retries),
        )
        self._cards: list[ModelCard] = []
        self._listed_at = 0.0
        self._reachable = False
        self._refresh_lock = asyncio.Lock()

    async def start(self) -> None:
        await self._refresh(force=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    def models(self) -> list[ModelCard]:
        if self.config.models is not None:
            now = int(time.time())
            return [ModelCard(m, "upstream", now, self.name) for m in self.config.models]
        return self._cards

    async def ready(self) -> bool:
        await self._refresh()
        return self._reachable

    async def _refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._listed_at < _MODELS_TTL_S:
            return
        async with self._refresh_lock:
            if not force and time.monotonic() - self._listed_at < _MODELS_TTL_S:
                return
            try:
                response = await self._client.get("/models", timeout=self.config.connect_timeout_s)
                response.raise_for_status()
                listed = orjson.loads(response.content)["data"]
                self._cards = [
                    ModelCard(m["id"], m.get("owned_by", "upstream"), int(m.get("created", 0)), self.name)
                    for m in listed
                ]
                self._reachable = True
                self._listed_at = time.monotonic()
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning("upstream %s did not list its models: %r", self.config.url, exc)
                self._reachable = False
                self._listed_at = time.monotonic() - _MODELS_TTL_S + 2.0  # try again in 2 s

    def _body(self, generation: Generation) -> bytes:
        body = dict(generation.body)
        body["messages"] = generation.messages
        return orjson.dumps(body)

    async def complete(self, generation: Generation) -> dict[str, Any]:
        try:
            response = await self._client.post(
                "/chat/completions",
                content=self._body(generation),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc) from exc
        if response.status_code != 200:
            raise _map_status(response.status_code, response.content)
        try:
            data: dict[str, Any] = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("the upstream answered with invalid JSON") from exc
        if not isinstance(data.get("choices"), list):
            raise UpstreamError("the upstream answered without choices")
        return data

    async def open_stream(self, generation: Generation) -> AsyncIterator[dict[str, Any]]:
        request = self._client.build_request(
            "POST",
            "/chat/completions",
            content=self._body(generation),
            headers={"content-type": "application/json", "accept": "text/event-stream"},
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _map_transport_error(exc) from exc
        if response.status_code != 200:
            try:
                content = await response.aread()
            except httpx.HTTPError:
                content = b""
            finally:
                await response.aclose()
            raise _map_status(response.status_code, content)
        return _events(response)


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError("the upstream sent an invalid stream event") from exc
            if "error" in event:
                message = str(event["error"].get("message", "upstream error"))
                raise UpstreamError(f"the upstream failed mid-stream: {message}")
            yield event
    except httpx.HTTPError as exc:
        raise _map_transport_error(exc) from exc
    finally:
        await response.aclose()


def _map_transport_error(exc: httpx.HTTPError) -> RailguardError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeoutError("the upstream did not answer in time")
    return UpstreamError(f"the upstream is unreachable: {type(exc).__name__}")


def _map_status(status: int, content: bytes) -> RailguardError:
    message, param, code = f"the upstream answered HTTP {status}", None, None
    try:
        error = orjson.loads(content)["error"]
        message = str(error.get("message") or message)
        param, code = error.get("param"), error.get("code")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        pass
    if 400 <= status < 500 and status not in (401, 403, 408, 429):
        return UpstreamRejectedError(status, message, param=param, code=code)
    if status == 429:
        return UpstreamError(f"the upstream is rate limiting: {message}", code="upstream_rate_limited")
    if status == 408:
        return UpstreamTimeoutError(f"the upstream timed out: {message}")
    return UpstreamError(f"the upstream failed: {message}", code=f"upstream_http_{status}")
