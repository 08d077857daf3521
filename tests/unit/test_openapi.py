"""`GET /openapi.json` describes the request bodies the routes validate and the errors they answer with,
and it agrees with the validator: bodies the document allows are served, bodies it refuses get a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
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
