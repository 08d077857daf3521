"""`POST /v1/chat/completions`, over HTTP: who calls, the limits, the body read and validated, then
the chat service's result as JSON or SSE. No logic of the request's own lives here."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.chat.recording import RequestContext
from gateway.disconnect import ClientDisconnected, cancel_on_disconnect
from gateway.errors import RailguardError, ServiceUnavailableError
from gateway.http import EventStreamResponse, json_response, services_of
from gateway.ratelimit import chat_tokens
from gateway.requests import check_token_limit, parse_chat_request, parse_json_object, read_body

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    services = services_of(request)
    limits = services.settings.limits
    ctx = RequestContext(request_id=uuid.uuid4().hex, tenant="default")
    model = ""
    rate: dict[str, str] = {}  # the x-ratelimit-* headers, on every answer once known
    try:
        if services.drain.draining:
            raise ServiceUnavailableError(
                "The server is shutting down. Retry the request.",
                code="server_shutting_down",
                headers={"retry-after": "1"},
            )
        identity = services.auth.identify(request.headers)
        ctx.tenant = identity.tenant
        async with services.limiter.slot(identity) as slot:
            body = parse_json_object(await read_body(request, limits.max_body_bytes))
            model = _model_named(body)
            rate = await services.rate_limits.check(
                identity, chat_tokens(body, limits.reserved_completion_tokens)
            )
            chat_request = parse_chat_request(body, limits)
            check_token_limit(chat_request, services.models.card(chat_request.model))
            try:
                result = await cancel_on_disconnect(request, services.chat.create(chat_request, body, ctx))
            except ClientDisconnected:  # recorded as 499 by `create`; nobody reads this response
                return Response(status_code=499)
            headers = {"x-request-id": ctx.request_id, "x-railguard-action": result.action.value, **rate}
            if result.stream is None:
                return json_response(result.body, headers=headers)
            headers["cache-control"] = "no-cache"
            return EventStreamResponse(slot.release_after(services.drain.guard(result.stream)), headers)
    except RailguardError as error:
        services.chat.recorder.reject(ctx, model, error)  # refused before the service had it (else a no-op)
        error.headers = {**rate, **error.headers}
        raise


def _model_named(body: dict[str, Any]) -> str:
    named = body.get("model")
    return named if isinstance(named, str) else ""
