"""`GET /openapi.json` describes the request bodies the routes validate and the errors they answer with,
and it agrees with the validator: bodies the document allows are served, bodies it refuses get a 400.
Every review route the app serves is in it, with its method, bearer key, body and errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.review.routes import router as review_router
from gateway.settings import Settings

pytestmark = pytest.mark.anyio

USER = {"role": "user", "content": "say: hi"}
VALID: dict[str, Any] = {"model": "stub-model", "messages": [USER]}
CALL = {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}


@pytest.fixture
async def served(tmp_path: Path, stub_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    settings = Settings.load(
        upstream={"url": stub_url},
        cache_dir=tmp_path,
        classifiers={"enabled": False},
        tenants={"a": {"api_keys": ["sk-tenant-a-0001"]}},
    )
    app = create_app(settings, registry=CollectorRegistry())
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": "Bearer sk-tenant-a-0001"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as client,
    ):
        r = await client.get("/openapi.json", headers={"authorization": ""})
        assert r.status_code == 200  # no key needed: it describes the API, nothing of its traffic
        yield client, r.json()


def _validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


async def test_both_bodies_and_their_errors_are_described(
    served: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    _, doc = served
    for path, model in [
        ("/v1/chat/completions", "ChatCompletionRequest"),
        ("/v1/moderations", "ModerationRequest"),
    ]:
        operation = doc["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"} and model in doc["components"]["schemas"]
        for status in ("400", "401", "404", "408", "413", "429"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}
    assert "text/event-stream" in doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    error = {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}
    _validator(doc, "Error").validate(error)


@pytest.mark.parametrize(
    "body",
    [
        VALID,
        {**VALID, "stream": None, "n": None, "temperature": None, "max_tokens": None},
        {**VALID, "stream": True, "stream_options": {"include_usage": True}},
        {**VALID, "stop": ["a", "b", "c", "d"], "logit_bias": {"15": -100}, "vendor_field": [1]},
        {**VALID, "messages": [USER, {"role": "assistant", "tool_calls": [CALL]},
                               {"role": "tool", "tool_call_id": "c1", "content": "12:00"}]},
        {**VALID, "messages": [{"role": "user", "content": [{"type": "text", "text": "say: hi"}]}]},
    ],
)  # fmt: skip
async def test_bodies_the_document_allows_are_served(
    served: tuple[httpx.AsyncClient, dict[str, Any]], body: dict[str, Any]
) -> None:
    client, doc = served
    _validator(doc, "ChatCompletionRequest").validate(body)
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**VALID, "stream": "true"}, "stream"),
        ({**VALID, "n": 0}, "n"),
        ({**VALID, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**VALID, "stream_options": {"include_usage": True}}, "stream_options"),
        ({**VALID, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({**VALID, "messages": [{"role": "system", "content": None}]}, "messages[0].content"),
        ({**VALID, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0]"),
        ({**VALID, "messages": []}, "messages"),
        ({"messages": [USER]}, "model"),
    ],
)
async def test_bodies_the_document_refuses_get_a_400(
    served: tuple[httpx.AsyncClient, dict[str, Any]], body: dict[str, Any], param: str
) -> None:
    client, doc = served
    assert not _validator(doc, "ChatCompletionRequest").is_valid(body)
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


async def test_moderation_inputs_agree_too(served: tuple[httpx.AsyncClient, dict[str, Any]]) -> None:
    client, doc = served
    validator = _validator(doc, "ModerationRequest")
    for body in (
        {"input": "hi"},
        {"input": ["a", "b"]},
        {"input": [{"type": "text", "text": "a"}], "model": None},
    ):
        assert validator.is_valid(body)
        r = await client.post("/v1/moderations", json=body)  # no classifiers here: past validation, a 404
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", r.text
    for body in (
        {"input": ""},
        {"input": []},
        {"input": 5},
        {"input": [{"type": "text"}]},
        {"input": "x", "model": 5},
    ):
        assert not validator.is_valid(body)
        r = await client.post("/v1/moderations", json=body)
        assert r.status_code == 400, r.text


ADMIN = {"authorization": "Bearer root-key-0123456789abcd"}


@pytest.fixture
async def review_app(
    tmp_path: Path, stub_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    settings = Settings.load(
        upstream={"url": stub_url},
        cache_dir=tmp_path,
        classifiers={"enabled": False},
        tenants={"a": {"api_keys": ["sk-tenant-a-0001"]}},
        sink={"record": "all"},  # an allowed request's record is kept: a user may report it
        review={"reviewers": {"root": {"api_key": ADMIN["authorization"][7:], "role": "admin"}}},
    )
    app = create_app(settings, registry=CollectorRegistry())
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": "Bearer sk-tenant-a-0001"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as client,
    ):
        yield client, (await client.get("/openapi.json")).json()


async def test_every_review_route_the_app_serves_is_documented(
    review_app: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    _, doc = review_app
    routes = [r for r in review_router.routes if isinstance(r, APIRoute)]  # the app includes them as they are
    served = {(m.lower(), r.path) for r in routes if r.path.startswith("/v1/review/") for m in r.methods}
    documented = {(m, p) for p, ops in doc["paths"].items() if p.startswith("/v1/review/") for m in ops}
    assert served == documented and len(served) == 12
    assert not [p for p in doc["paths"] if p.startswith("/review")]  # the pages are not the API
    bearer = doc["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    error = {"$ref": "#/components/schemas/Error"}
    for method, path in served:
        operation = doc["paths"][path][method]
        responses = operation["responses"]
        assert operation["security"] == [{"bearer": []}] and "422" not in responses, (method, path)
        assert [s for s in responses if s < "300"] == (["202"] if path.endswith("/reports") else ["200"])
        expected = {"401", "404", "503"} | ({"400", "413"} if method in ("post", "put") else set())
        expected |= set() if path.endswith("/reports") else {"403"}
        expected |= {"409"} if path.endswith(("/labels", "/adjudication")) and method == "post" else set()
        expected |= {"409", "502", "504"} if path.endswith("/candidates") else set()  # the model's errors
        assert set(responses) - {"200", "202"} == expected, (method, path)
        assert all(responses[s]["content"]["application/json"]["schema"] == error for s in expected)
        assert ("requestBody" in operation) == (method in ("post", "put")), (method, path)
    bodies = {
        ("post", "/v1/review/items/{request_id}/labels"): "Label",
        ("post", "/v1/review/items/{request_id}/adjudication"): "Label",
        ("put", "/v1/review/reviewers/{reviewer}/role"): "RoleChange",
        ("post", "/v1/review/reports"): "Report",
    }
    for (method, path), name in bodies.items():
        body = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{name}"} and name in doc["components"]["schemas"]
    assert "application/jsonl" in doc["paths"]["/v1/review/import"]["post"]["requestBody"]["content"]
    assert "application/jsonl" in doc["paths"]["/v1/review/export"]["get"]["responses"]["200"]["content"]


@pytest.mark.parametrize(
    ("method", "path", "schema", "body", "param"),
    [
        ("post", "/v1/review/items/r1/labels", "Label", {"action": "refuse", "category": "hate"}, None),
        ("post", "/v1/review/items/r1/labels", "Label", {"action": "nope"}, "action"),
        ("post", "/v1/review/items/r1/labels", "Label", {"action": "allow", "category": "A B"}, "category"),
        ("post", "/v1/review/items/r1/adjudication", "Label", {"action": "allow", "extra": 1}, "extra"),
        ("put", "/v1/review/reviewers/nobody/role", "RoleChange", {"role": "admin"}, None),
        ("put", "/v1/review/reviewers/nobody/role", "RoleChange", {"role": "boss"}, "role"),
        ("post", "/v1/review/reports", "Report", {"request_id": "chatcmpl-nope", "reason": "wrong"}, None),
        ("post", "/v1/review/reports", "Report", {"request_id": ""}, "request_id"),
        ("post", "/v1/review/reports", "Report", {"request_id": 5}, "request_id"),
        ("post", "/v1/review/reports", "Report", {"request_id": "x", "reason": "x" * 2001}, "reason"),
    ],
)  # fmt: skip
async def test_review_bodies_the_document_allows_pass_validation_and_those_it_refuses_get_a_400(
    review_app: tuple[httpx.AsyncClient, dict[str, Any]],
    method: str,
    path: str,
    schema: str,
    body: dict[str, Any],
    param: str | None,
) -> None:
    client, doc = review_app
    headers = {} if path.endswith("/reports") else ADMIN  # reports: the tenant's own key
    r = await client.request(method.upper(), path, json=body, headers=headers)
    if param is None:
        assert _validator(doc, schema).is_valid(body)
        assert r.status_code == 404, r.text  # past validation: no such item, reviewer or record
    else:
        assert not _validator(doc, schema).is_valid(body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


async def test_a_user_report_on_an_answer_in_the_records_file_queues_it(
    review_app: tuple[httpx.AsyncClient, dict[str, Any]],
) -> None:
    client, _ = review_app
    answered = await client.post("/v1/chat/completions", json=VALID)
    request_id = answered.json()["railguard"]["request_id"]
    for _ in range(100):  # the sink writes in the background
        reported = await client.post("/v1/review/reports", json={"request_id": request_id})
        if reported.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert reported.status_code == 202, reported.text
    item = (await client.get(f"/v1/review/items/{request_id}", headers=ADMIN)).json()
    assert (item["reason"], item["priority"], item["record"]["action"]) == ("user report", 100, "allow")
