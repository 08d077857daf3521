"""Strict types as OpenAI's API has them (a string is not a bool or a number, a bool is not a number, a
decimal is not an integer), null wherever OpenAI takes it, and `max_tokens` bounded with a 400 that
names the limit: the app in process, in front of the stub upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.backends.base import ModelCard
from gateway.errors import InvalidRequestError
from gateway.protocol import ChatCompletionRequest
from gateway.requests import check_token_limit
from gateway.settings import Settings

pytestmark = pytest.mark.anyio

CEILING = 1000
VALID: dict[str, Any] = {"model": "stub-model", "messages": [{"role": "user", "content": "say: hi"}]}


@pytest.fixture
async def http(tmp_path: Path, stub_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.load(
        upstream={"url": stub_url, "max_tokens_ceiling": CEILING},
        cache_dir=tmp_path,
        classifiers={"enabled": False},
    )
    app = create_app(settings, registry=CollectorRegistry())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("change", "param", "expected", "got"),
    [
        ({"stream": "true"}, "stream", "a boolean", "a string"),
        ({"stream": 1}, "stream", "a boolean", "an integer"),
        ({"logprobs": "false"}, "logprobs", "a boolean", "a string"),
        ({"max_tokens": "5"}, "max_tokens", "an integer", "a string"),
        ({"max_tokens": True}, "max_tokens", "an integer", "a boolean"),
        ({"max_tokens": 5.0}, "max_tokens", "an integer", "a decimal number"),
        ({"max_completion_tokens": "5"}, "max_completion_tokens", "an integer", "a string"),
        ({"n": True}, "n", "an integer", "a boolean"),
        ({"seed": "7"}, "seed", "an integer", "a string"),
        ({"top_logprobs": "3"}, "top_logprobs", "an integer", "a string"),
        ({"temperature": "0.5"}, "temperature", "a number", "a string"),
        ({"temperature": True}, "temperature", "a number", "a boolean"),
        ({"top_p": "1"}, "top_p", "a number", "a string"),
        ({"presence_penalty": False}, "presence_penalty", "a number", "a boolean"),
        ({"frequency_penalty": "0"}, "frequency_penalty", "a number", "a string"),
        ({"logit_bias": {"15": "5"}}, "logit_bias.15", "a number", "a string"),
        ({"user": 5}, "user", "a string", "an integer"),
        ({"model": 5}, "model", "a string", "an integer"),
        ({"stop": 5}, "stop", "a string or an array", "an integer"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage",
         "a boolean", "a string"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a string or an array",
         "an integer"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
         "messages[0].content[0].text", "a string", "an integer"),
        ({"railguard": {"language": 5}}, "railguard.language", "a string", "an integer"),
    ],
)  # fmt: skip
async def test_a_wrong_type_is_a_400_in_openais_words(
    http: httpx.AsyncClient, change: dict[str, Any], param: str, expected: str, got: str
) -> None:
    r = await http.post("/v1/chat/completions", json={**VALID, **change})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": {
            "message": f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_type",
        }
    }


NULLABLE = [
    "frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "n",
    "presence_penalty", "response_format", "seed", "stop", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "railguard",
]  # fmt: skip


async def test_null_is_accepted_wherever_openai_accepts_it(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/chat/completions", json={**VALID, **dict.fromkeys(NULLABLE)})
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 1 and r.json()["choices"][0]["message"]["content"] == "hi"
    message = {"role": "user", "content": "say: hi", "name": None, "tool_calls": None, "tool_call_id": None}
    r = await http.post("/v1/chat/completions", json={**VALID, "messages": [message]})
    assert r.status_code == 200, r.text


async def test_a_value_of_the_right_type_still_has_its_range_checked(http: httpx.AsyncClient) -> None:
    for change, param in [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {"15": 101}}, "logit_bias.15"),
        ({"n": 17}, "n"),
    ]:
        r = await http.post("/v1/chat/completions", json={**VALID, **change})
        assert r.status_code == 400, r.text
        assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, "invalid_value"), r.text


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("asked", [CEILING + 1, 10**12])
async def test_max_tokens_past_the_upstream_ceiling_is_a_400_naming_the_limit(
    http: httpx.AsyncClient, field: str, asked: int
) -> None:
    r = await http.post("/v1/chat/completions", json={**VALID, field: asked})
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": {
            "message": f"{field} is too large: {asked}. This model supports at most {CEILING} completion "
            f"tokens, whereas you provided {asked}.",
            "type": "invalid_request_error",
            "param": field,
            "code": "invalid_value",
        }
    }
    r = await http.post("/v1/chat/completions", json={**VALID, field: CEILING})
    assert r.status_code == 200, r.text


async def test_max_tokens_past_the_ceiling_never_reaches_the_upstream(
    http: httpx.AsyncClient, stub_url: str
) -> None:
    async with httpx.AsyncClient() as direct:
        before = (await direct.get(stub_url.removesuffix("/v1") + "/stub/requests")).json()
        r = await http.post("/v1/chat/completions", json={**VALID, "stream": True, "max_tokens": 10**12})
        after = (await direct.get(stub_url.removesuffix("/v1") + "/stub/requests")).json()
    assert r.status_code == 400 and after == before


def test_a_local_models_limit_is_its_context() -> None:
    card = ModelCard("gemma", "railguard", 0, "local", max_tokens=4096)
    request = ChatCompletionRequest.model_validate({**VALID, "max_completion_tokens": 4097})
    with pytest.raises(InvalidRequestError) as caught:
        check_token_limit(request, card)
    assert caught.value.param == "max_completion_tokens" and "at most 4096" in caught.value.message
    check_token_limit(ChatCompletionRequest.model_validate({**VALID, "max_tokens": 4096}), card)
    check_token_limit(request, ModelCard("other", "x", 0, "fake"))  # no limit known: the backend decides
