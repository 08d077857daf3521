"""Thin HTTP handlers: authenticate, read, call a service, render. No logic lives here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse

from gateway.disconnect import ClientDisconnected, cancel_on_disconnect
from gateway.errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    RailguardError,
    ServiceUnavailableError,
    render,
)
from gateway.ratelimit import chat_tokens, moderation_tokens
from gateway.requests import check_token_limit, parse_chat_request, parse_json_object, read_body
from gateway.serving import RequestContext

if TYPE_CHECKING:
    from gateway.app import Services

log = logging.getLogger(__name__)
router = APIRouter()


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    services = _services(request)
    ctx = RequestContext(request_id=uuid.uuid4().hex, tenant="default")
    model = ""
    try:
        if services.drain.draining:
            raise ServiceUnavailableError(
                "The server is shutting down. Retry the request.",
                code="server_shutting_down",
                headers={"retry-after": "1"},
            )
        identity = services.auth.identify(request.headers)
        ctx.tenant = identity.tenant
        slot = services.limiter.acquire(identity)
    except RailguardError as error:
        services.chat.record_rejection(ctx, model, error)
        raise
    limits = services.settings.limits
    rate: dict[str, str] = {}  # the x-ratelimit-* headers, on every answer from here on
    try:
        body = parse_json_object(await read_body(request, limits.max_body_bytes))
        named = body.get("model")
        model = named if isinstance(named, str) else ""
        rate = await services.rate_limits.check(
            identity, chat_tokens(body, limits.reserved_completion_tokens)
        )
        chat_request = parse_chat_request(body, limits)
        check_token_limit(chat_request, services.models.card(chat_request.model))
    except RailguardError as error:
        services.limiter.release(slot)
        services.chat.record_rejection(ctx, model, error)
        error.headers = {**rate, **error.headers}
        raise
    except BaseException:
        services.limiter.release(slot)
        raise
    try:
        result = await cancel_on_disconnect(request, services.chat.create(chat_request, body, ctx))
    except ClientDisconnected:  # recorded as 499 by `create`; nobody reads this response
        services.limiter.release(slot)
        return Response(status_code=499)
    except BaseException as error:
        services.limiter.release(slot)
        if isinstance(error, RailguardError):
            error.headers = {**rate, **error.headers}
        raise
    headers = {"x-request-id": ctx.request_id, "x-railguard-action": result.action.value, **rate}
    if result.stream is None:
        services.limiter.release(slot)
        return _json(result.body, headers=headers)

    async def stream() -> AsyncIterator[bytes]:
        assert result.stream is not None
        try:
            async for data in services.drain.guard(result.stream):
                yield data
        finally:
            services.limiter.release(slot)

    headers["cache-control"] = "no-cache"
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    services = _services(request)
    services.auth.identify(request.headers)
    cards = services.models.cards()
    return _json({"object": "list", "data": [c.to_openai() for c in cards]})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> Response:
    services = _services(request)
    services.auth.identify(request.headers)
    return _json(services.models.card(model_id).to_openai())


@router.post("/v1/moderations")
async def moderations(request: Request) -> Response:
    services = _services(request)
    identity = services.auth.identify(request.headers)
    body = parse_json_object(await read_body(request, services.settings.limits.max_body_bytes))
    rate = await services.rate_limits.check(identity, moderation_tokens(body))
    try:
        result = await services.moderations.create(body, services.settings.limits)
    except RailguardError as error:
        error.headers = {**rate, **error.headers}
        raise
    return _json(result, headers=rate)


@router.get("/healthz")
async def healthz() -> Response:
    return _json({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    services = _services(request)
    states = {b.name: await b.ready() for b in services.models.backends}
    ready = bool(states) and all(states.values())
    states["guards"] = services.chat.guards.ready
    ready = ready and states["guards"] and not services.drain.draining
    status = "draining" if services.drain.draining else "ready" if ready else "not_ready"
    body = {"status": status, "backends": states}
    return _json(body, 200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    services = _services(request)
    services.auth.check_metrics(request.headers)
    body, content_type = services.telemetry.render()
    return Response(body, media_type=content_type)


def install_error_handlers(app: FastAPI) -> None:
    async def railguard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RailguardError)
        return _json(render(exc), exc.status, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: RailguardError
        if exc.status_code == 404:
            error = NotFoundError(f"Unknown path: {request.method} {request.url.path}", code="unknown_url")
        elif exc.status_code == 405:
            error = MethodNotAllowedError(f"Method {request.method} is not allowed on {request.url.path}")
        else:
            error = InvalidRequestError(str(exc.detail))
            error.status = exc.status_code  # type: ignore[misc]
        return _json(render(error), error.status)

    async def validation_error(request: Request, exc: Exception) -> Response:
        return _json(render(InvalidRequestError("Invalid request.")), 400)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = RailguardError("The server had an error while processing your request.")
        return _json(render(error), 500)

    app.add_exception_handler(RailguardError, railguard_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
