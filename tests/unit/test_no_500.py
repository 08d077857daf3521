"""Whatever the body, the gateway answers with a 2xx or an OpenAI-style 4xx, never a 500."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import Settings

pytestmark = pytest.mark.anyio

VALID: dict[str, Any] = {
    "model": "stub-model",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "say: hi"}]},
    ],
    "max_tokens": 5,
    "temperature": 0.5,
    "stop": ["\n"],
    "n": 1,
    "stream": False,
    "railguard": {"language": "en"},
}
ODD_VALUES: list[Any] = [None, 0, -1, 1e308, "", "x" * 300, [], {}, [None], {"a": 1}, True, "\ud7ff", 2**70]


def _mutations(rng: random.Random, n: int) -> list[Any]:
    bodies: list[Any] = []
    for _ in range(n):
        body = orjson.loads(orjson.dumps(VALID))
        for _ in range(rng.randint(1, 3)):
            target = body
            path = rng.choice([["model"], ["messages"], ["max_tokens"], ["temperature"], ["stop"], ["n"],
                               ["stream"], ["railguard"], ["railguard", "language"], ["messages", 1],
                               ["messages", 1, "content"], ["messages", 1, "content", 0, "text"],
                               ["messages", 0, "role"], ["stream_options"], ["tools"], ["seed"]])  # fmt: skip
            try:
                for key in path[:-1]:
                    target = target[key]
                if rng.random() < 0.2 and isinstance(target, dict):
                    target.pop(path[-1], None)
                else:
                    target[path[-1]] = rng.choice(ODD_VALUES)
            except (KeyError, IndexError, TypeError):
                continue
        bodies.append(body)
    return bodies


@pytest.fixture
async def http(tmp_path: Path, stub_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.load(upstream={"url": stub_url}, cache_dir=tmp_path, classifiers={"enabled": False})
    app = create_app(settings, registry=CollectorRegistry())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw") as c,
    ):
        yield c


async def test_mutated_bodies_never_get_a_500(http: httpx.AsyncClient) -> None:
    statuses: dict[int, int] = {}
    for body in _mutations(random.Random(7), 300):
        r = await http.post("/v1/chat/completions", content=json.dumps(body))  # stdlib: big ints too
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (body, r.text)
        if r.status_code >= 400:
            assert set(r.json()["error"]) >= {"message", "type", "param", "code"}, r.text
        elif body.get("stream") is True:
            assert r.text.rstrip().endswith("data: [DONE]")
    assert statuses.get(200, 0) > 0 and sum(v for k, v in statuses.items() if k >= 400) > 0


IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": [1, 2]}, "input[0]"),
        ({"input": {"text": "hi"}}, "input"),
        ({"input": ["hi", {"type": "text", "text": "there"}]}, "input[1]"),
        ({"input": [{"type": "video", "text": "hi"}]}, "input[0].type"),
        ({"input": [{"type": "text"}]}, "input[0]"),
        ({"input": [{"type": "text", "text": "a cat"}, IMAGE]}, "input[1]"),  # text only: never "harmless"
        ({"input": ["x"] * 1001}, "input"),
        ({"input": "x" * 200_001}, "input[0]"),  # over max_message_chars
        ({"input": "hi", "model": 7}, "model"),
    ],
)
async def test_bad_moderation_inputs_get_a_400_that_names_the_parameter(
    http: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    r = await http.post("/v1/moderations", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


async def test_a_valid_moderation_input_passes_validation(http: httpx.AsyncClient) -> None:
    # This gateway runs no classifiers: a valid body gets past validation to a 404, not a 400.
    for body in ({"input": "hi"}, {"input": ["a", "b"]}, {"input": [{"type": "text", "text": "a cat"}]}):
        r = await http.post("/v1/moderations", json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", r.text


async def test_mutated_moderation_bodies_never_get_a_500(http: httpx.AsyncClient) -> None:
    rng = random.Random(11)
    for _ in range(200):
        body: dict[str, Any] = {"input": [{"type": "text", "text": "hi"}, "x"], "model": "m"}
        for key in rng.sample(["input", "model", "extra"], rng.randint(1, 2)):
            body[key] = rng.choice([*ODD_VALUES, [IMAGE], [{"type": "text", "text": None}]])
        r = await http.post("/v1/moderations", content=json.dumps(body))
        assert r.status_code < 500, (body, r.text)
        assert set(r.json()["error"]) >= {"message", "type", "param", "code"}, r.text


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "invalid_type"),
        (
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "developer"}]},
            "messages[1].content",
            "missing_required_parameter",
        ),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"stream": False, "stream_options": {}}, "stream_options", "invalid_value"),
    ],
)
async def test_chat_bodies_openai_refuses_get_its_400(
    http: httpx.AsyncClient, change: dict[str, Any], param: str, code: str
) -> None:
    r = await http.post("/v1/chat/completions", json={**VALID, **change})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code), error


async def test_an_assistant_message_may_hold_only_tool_calls(http: httpx.AsyncClient) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12:00"},
    ]
    r = await http.post("/v1/chat/completions", json={**VALID, "messages": messages})
    assert r.status_code == 200, r.text
    r = await http.post(
        "/v1/chat/completions", json={**VALID, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]"), r.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", "yes"),
        ("stream", "true"),
        ("stream", 1),
        ("n", "2"),
        ("n", 1.5),
        ("n", True),
        ("logprobs", "true"),
        ("stream_options", {"include_usage": "yes"}),
    ],
)
async def test_a_string_or_number_is_not_a_bool_and_a_bool_is_not_a_number(
    http: httpx.AsyncClient, field: str, value: Any
) -> None:
    body = {**VALID, field: value}
    if field == "stream_options":
        body["stream"] = True
    r = await http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and field in (error["param"] or "")


async def test_null_stream_and_n_mean_their_defaults_as_in_openais_api(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/chat/completions", json={**VALID, "stream": None, "n": None})
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 1


async def test_an_unknown_moderation_model_is_a_404_and_openais_names_are_served(
    http: httpx.AsyncClient,
) -> None:
    r = await http.post("/v1/moderations", json={"input": "hello", "model": "gpt-4o"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and r.json()["error"]["param"] == "model"
    for model in ("omni-moderation-latest", "text-moderation-latest"):
        r = await http.post("/v1/moderations", json={"input": "hello", "model": model})
        assert r.status_code == 200 or r.json()["error"]["code"] != "model_not_found", r.text
