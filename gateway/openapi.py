"""The OpenAPI document served at `GET /openapi.json`: FastAPI's, plus what the routes cannot declare.

The chat and moderation routes read the raw request (to answer bad JSON, bad UTF-8 and oversize bodies
in OpenAI's words), so FastAPI sees no request body. Here their bodies are described from the same
pydantic models that validate them, with the error responses every route may give in OpenAI's shape.
The document is what schemathesis fuzzes (`tests/integration/test_fuzz_openapi.py`, docs/reliability.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from gateway.moderations.protocol import ModerationRequest
from gateway.protocol import ChatCompletionRequest

__all__ = ["ERROR_SCHEMA", "install_openapi", "openapi_document"]

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_ERRORS = {
    "400": "Malformed JSON, invalid UTF-8, a wrong type or a bad value (`param` names it)",
    "401": "A missing or unknown API key",
    "404": "An unknown model",
    "408": "The body was not sent in time (limits.body_read_timeout_s)",
    "413": "The body is larger than limits.max_body_bytes",
    "429": "Past the key's in-flight or rate limit, or the upstream's own (with Retry-After)",
    "503": "Not ready yet, or draining",
}
_UPSTREAM_ERRORS = {
    "502": "The upstream is down or failed",
    "504": "The upstream was too slow",
}


def _operation(
    model: type[BaseModel], schemas: dict[str, Any], success: dict[str, Any], upstream: bool
) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    errors = {**_ERRORS, **(_UPSTREAM_ERRORS if upstream else {})}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        },
        "responses": {
            "200": success,
            **{status: {"description": why, "content": error} for status, why in errors.items()},
        },
    }


def openapi_document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description="An OpenAI-compatible guardrail gateway. Errors are OpenAI's JSON: "
        '`{"error": {"message", "type", "param", "code"}}`.',
        routes=app.routes,
    )
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    completion = {
        "description": "A chat.completion object, or with `stream: true` server-sent chat.completion.chunk "
        "events ending with `data: [DONE]`",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    moderation = {
        "description": "A moderation object: a result per input",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    paths = doc["paths"]
    paths["/v1/chat/completions"]["post"].update(
        _operation(ChatCompletionRequest, schemas, completion, upstream=True)
    )
    paths["/v1/moderations"]["post"].update(
        _operation(ModerationRequest, schemas, moderation, upstream=False)
    )
    return doc


def install_openapi(app: FastAPI) -> None:
    """Serve `openapi_document(app)` (built once, on the first request) at the app's `openapi_url`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
