"""The service's own routes (models, health, readiness, metrics) and the one error handler that renders
every `RailguardError` as OpenAI's JSON. Chat and moderations have their own routers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gateway.errors import InvalidRequestError, MethodNotAllowedError, NotFoundError, RailguardError, render
from gateway.http import json_response, services_of

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    services = services_of(request)
    services.auth.identify(request.headers)
    cards = services.models.cards()
    return json_response({"object": "list", "data": [c.to_openai() for c in cards]})


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> Response:
    services = services_of(request)
    services.auth.identify(request.headers)
    return json_response(services.models.card(model_id).to_openai())


@router.get("/healthz")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    services = services_of(request)
    states = {b.name: await b.ready() for b in services.models.backends}
    ready = bool(states) and all(states.values())
    states["guards"] = services.chat.guards.ready
    ready = ready and states["guards"] and not services.drain.draining
    status = "draining" if services.drain.draining else "ready" if ready else "not_ready"
    body = {"status": status, "backends": states}
    return json_response(body, 200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    services = services_of(request)
    services.auth.check_metrics(request.headers)
    body, content_type = services.telemetry.render()
    return Response(body, media_type=content_type)


def install_error_handlers(app: FastAPI) -> None:
    async def railguard_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RailguardError)
        return json_response(render(exc), exc.status, exc.headers)

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
        return json_response(render(error), error.status)

    async def validation_error(request: Request, exc: Exception) -> Response:
        return json_response(render(InvalidRequestError("Invalid request.")), 400)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = RailguardError("The server had an error while processing your request.")
        return json_response(render(error), 500)

    app.add_exception_handler(RailguardError, railguard_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
