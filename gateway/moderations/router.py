"""`POST /v1/moderations`, over HTTP: who calls, the body read, the rate limit, the service's answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.errors import RailguardError
from gateway.http import json_response, services_of
from gateway.ratelimit import moderation_tokens
from gateway.requests import parse_json_object, read_body

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/moderations")
async def moderations(request: Request) -> Response:
    services = services_of(request)
    identity = services.auth.identify(request.headers)
    body = parse_json_object(await read_body(request, services.settings.limits.max_body_bytes))
    rate = await services.rate_limits.check(identity, moderation_tokens(body))
    try:
        result = await services.moderations.create(body, services.settings.limits)
    except RailguardError as error:
        error.headers = {**rate, **error.headers}
        raise
    return json_response(result, headers=rate)
