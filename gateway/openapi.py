"""The OpenAPI document served at `GET /openapi.json`: FastAPI's, plus what the routes cannot declare.

The chat, moderation and review routes read the raw request (to answer bad JSON, bad UTF-8 and oversize
bodies in OpenAI's words), so FastAPI sees no request body. Here their bodies are described from the same
pydantic models that validate them, with the error responses every route may give in OpenAI's shape;
the review API (`/v1/review/...`, docs/review.md) also with its bearer key and the role each route needs.
The document is what schemathesis fuzzes (`tests/integration/test_fuzz_openapi.py`, docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from gateway.moderations.protocol import ModerationRequest
from gateway.protocol import ChatCompletionRequest
from gateway.review.model import CandidateRequest, Label, Report, RoleChange

__all__ = [
    "ERROR_SCHEMA",
    "REVIEW_OPERATIONS",
    "ReviewOperation",
    "describe_review",
    "install_openapi",
    "openapi_document",
]

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


_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _schema_ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """``model``'s JSON schema among the components (with the schemas it uses), and a reference to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(
    model: type[BaseModel], schemas: dict[str, Any], success: dict[str, Any], upstream: bool
) -> dict[str, Any]:
    error = _ERROR_CONTENT
    errors = {**_ERRORS, **(_UPSTREAM_ERRORS if upstream else {})}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _schema_ref(model, schemas)}},
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
    describe_review(paths, doc["components"])
    return doc


# --- the review API -------------------------------------------------------------------------------

_REVIEW_ERRORS = {
    "400": "A body that is not JSON or does not fit its schema (`param` names the field), an adjudication "
    "without a reason, or an import line that does not fit (nothing is imported)",
    "401": "A missing or unknown key",
    "403": "The key's role is too small for the route (a user's key on a reviewer's route)",
    "404": "No such item, record or reviewer, or the review queue is off (`code`: `unknown_url`)",
    "409": "The item is already decided, or not waiting for adjudication, or keeps no prompt to answer",
    "413": "The body is larger than the route's limit",
    "503": "The queue's store (Redis) does not answer (`code`: `review_store_unavailable`); nothing changed",
    "502": "The model's upstream is down or failed (candidate answers)",
    "504": "The model's upstream was too slow (candidate answers)",
}
_ITEM_REF = {"$ref": "#/components/schemas/ReviewItem"}
_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An item of the review queue. `gold`, `final` and `labels` are shown to adjudicators "
    "and admins only.",
    "required": ["request_id", "entered", "reason", "priority", "category", "language", "tenant", "record",
                 "status", "candidates"],
    "properties": {
        "request_id": {"type": "string"},
        "entered": {"type": "number", "description": "When it entered the queue (Unix time)"},
        "reason": {"type": "string", "description": "The intake rule that let it in, `user report`, `gold`"},
        "priority": {"type": "integer"},
        "category": {"type": "string"},
        "language": {"type": "string"},
        "tenant": {"type": "string"},
        "record": {"type": "object", "description": "The decision record (docs/records.md)"},
        "status": {"enum": ["open", "adjudication", "done"]},
        "gold": {"type": ["object", "null"], "description": "A gold item's known answer (a label)"},
        "final": {"type": ["object", "null"], "description": "The final decision (a label)"},
        "labels": {"type": "array", "items": {"type": "object"},
                   "description": "Each label with its `reviewer` and `created`"},
        "candidates": {"$ref": "#/components/schemas/Candidates"},
    },
}  # fmt: skip


def _json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


_STRING, _INTEGER = {"type": "string"}, {"type": "integer"}
_CANDIDATES: dict[str, Any] = {"$ref": "#/components/schemas/Candidates"}
_CANDIDATES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "description": "The model's answers to rank (a label's `ranking` lists their indices, best first); "
    "empty until a reviewer asks for them",
    "items": _object(text=_STRING, model=_STRING, finish_reason={"type": ["string", "null"]}),
}
_JSONL = {"type": "string", "description": "JSON Lines: one JSON object a line"}


@dataclass(frozen=True)
class ReviewOperation:
    """How one review route is described: what it does, the role it needs, its success response, the
    error statuses it may answer besides 401, 404 and 503, and its request body (a model, or the media
    type of a text body)."""

    summary: str
    role: str
    success: dict[str, Any]
    errors: tuple[str, ...] = ("403",)
    body: type[BaseModel] | str | None = None
    status: str = "200"


_LABELLED = _json_response(_object(request_id=_STRING, status={"enum": ["open", "adjudication", "done"]}),
                           "The item's status after it")  # fmt: skip
_CHANGES = ("400", "403", "409", "413")
REVIEW_OPERATIONS: dict[tuple[str, str], ReviewOperation] = {
    ("get", "/v1/review/next"): ReviewOperation(
        "The next item for you", "reviewer",
        _json_response(_object(item={"anyOf": [_ITEM_REF, {"type": "null"}]}), "null: none waits"),
    ),
    ("get", "/v1/review/items/{request_id}"): ReviewOperation(
        "An item", "reviewer", _json_response(_ITEM_REF, "The item")
    ),
    ("post", "/v1/review/items/{request_id}/labels"): ReviewOperation(
        "Label an item (again, to change your label while it is open)", "reviewer", _LABELLED, _CHANGES, Label
    ),
    ("post", "/v1/review/items/{request_id}/candidates"): ReviewOperation(
        "The item's candidate answers to rank: the model answers the conversation again `n` times (on "
        "the first call; later calls return the same answers)", "reviewer",
        _json_response(_object(request_id=_STRING, candidates=_CANDIDATES), "The item's candidates"),
        ("400", "403", "409", "413", "502", "504"), CandidateRequest,
    ),
    ("get", "/v1/review/adjudication"): ReviewOperation(
        "Items waiting for an adjudicator, most urgent first", "adjudicator",
        _json_response(_object(items={"type": "array", "items": _ITEM_REF}), "The disputed items"),
    ),
    ("post", "/v1/review/items/{request_id}/adjudication"): ReviewOperation(
        "Decide a disputed item (a label with a `reason`); final", "adjudicator", _LABELLED, _CHANGES, Label
    ),
    ("get", "/v1/review/stats"): ReviewOperation(
        "Queue counts and agreement (per reviewer, pair and category)", "adjudicator",
        _json_response({"type": "object"}, "The statistics"),
    ),
    ("put", "/v1/review/reviewers/{reviewer}/role"): ReviewOperation(
        "Change a reviewer's role", "admin",
        _json_response(_object(reviewer=_STRING, role=_STRING), "Changed"), ("400", "403", "413"), RoleChange,
    ),
    ("get", "/v1/review/audit"): ReviewOperation(
        "Audit events, newest first (`?request_id=` for one item's)", "admin",
        _json_response(_object(events={"type": "array", "items": {"type": "object"}}), "The events"),
    ),
    ("get", "/v1/review/export"): ReviewOperation(
        "Decided items, oldest first (the trainer's input)", "admin",
        {"description": "One item a line", "content": {"application/jsonl": {"schema": _JSONL}}},
    ),
    ("post", "/v1/review/import"): ReviewOperation(
        "Import labels and gold items (every line checked first; all written or none)", "admin",
        _json_response(_object(label=_INTEGER, gold=_INTEGER), "Lines imported, by type"),
        ("400", "403", "413"), "application/jsonl",
    ),
    ("post", "/v1/review/reports"): ReviewOperation(
        "Report an answer: its record enters the queue at the top", "any API key",
        _json_response(_object(request_id=_STRING, status={"const": "reported"}), "Reported"),
        ("400", "413"), Report, status="202",
    ),
}  # fmt: skip


def describe_review(paths: dict[str, Any], components: dict[str, Any]) -> None:
    """Describe the review routes in FastAPI's ``paths`` (which has them with their path parameters):
    bodies, responses, the bearer key and the role each needs."""
    schemas: dict[str, Any] = components["schemas"]
    schemas["ReviewItem"] = _ITEM_SCHEMA
    schemas["Candidates"] = _CANDIDATES_SCHEMA
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "A reviewer's key (review.reviewers or "
                   "the keys file); any API key for reports"},
    }  # fmt: skip
    for (method, path), spec in REVIEW_OPERATIONS.items():
        operation = paths[path][method]
        operation.update(summary=spec.summary, description=f"Role: {spec.role}.", tags=["review"],
                         security=[{"bearer": []}])  # fmt: skip
        if isinstance(spec.body, str):
            operation["requestBody"] = {"required": True, "content": {spec.body: {"schema": _JSONL}}}
        elif spec.body is not None:
            content = {"application/json": {"schema": _schema_ref(spec.body, schemas)}}
            operation["requestBody"] = {"required": True, "content": content}
        errors = sorted({"401", "404", "503", *spec.errors})
        operation["responses"] = {
            spec.status: spec.success,
            **{
                status: {"description": _REVIEW_ERRORS[status], "content": _ERROR_CONTENT}
                for status in errors
            },
        }
    audit = paths["/v1/review/audit"]["get"]
    audit["parameters"] = [{"name": "request_id", "in": "query", "required": False, "schema": _STRING}]


def install_openapi(app: FastAPI) -> None:
    """Serve `openapi_document(app)` (built once, on the first request) at the app's `openapi_url`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
