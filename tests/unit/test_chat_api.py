"""The whole request path: the official openai client over httpx.ASGITransport into the gateway app,
which calls a real stub upstream process over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.backends.upstream import UpstreamBackend
from gateway.settings import Settings, UpstreamConfig
from gateway.sinks.sqlite import SQLiteSink, read_records

pytestmark = pytest.mark.anyio

KEY_A = "sk-tenant-a-0001"
KEY_STRICT = "sk-tenant-strict-01"
METRICS_TOKEN = "scrape-token-0123456789"


@pytest.fixture
async def app_client(tmp_path: Path, test_policy_path: Path, stub_url: str) -> AsyncIterator[dict[str, Any]]:
    settings = Settings.load(
        upstream={"url": stub_url, "timeout_s": 30},
        policy_file=test_policy_path,
        cache_dir=tmp_path,
        tenants={"a": {"api_keys": [KEY_A], "max_concurrency": 2}, "strict": {"api_keys": [KEY_STRICT]}},
        classifiers={"enabled": False},
        metrics_token=METRICS_TOKEN,
    )
    assert isinstance(settings.upstream, UpstreamConfig)
    backend = UpstreamBackend(settings.upstream)
    sink = SQLiteSink(tmp_path / "records.sqlite3")
    app = create_app(settings, backends=[backend], sink=sink, registry=CollectorRegistry())
    async with app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
        client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key=KEY_A, http_client=http, max_retries=0)
        yield {"app": app, "http": http, "client": client, "sink": sink, "tmp": tmp_path}
        await http.aclose()


def _user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def test_allowed_completion_passes_fields_through(app_client: dict[str, Any]) -> None:
    client: openai.AsyncOpenAI = app_client["client"]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    r = await client.chat.completions.create(
        model="stub-model",
        messages=_user("say: Hello there."),
        temperature=0.3,
        top_p=0.9,
        seed=7,
        stop=["\n\n"],
        user="u1",
        max_completion_tokens=20,
        tools=tools,
        tool_choice="none",
        response_format={"type": "json_object"},
        extra_body={"railguard": {"language": "en"}, "vendor_field": 1},
    )
    assert r.choices[0].message.content == "Hello there."
    assert r.choices[0].finish_reason == "stop"
    received = r.model_extra["stub_received"]
    for field, value in [
        ("temperature", 0.3),
        ("top_p", 0.9),
        ("seed", 7),
        ("stop", ["\n\n"]),
        ("user", "u1"),
        ("max_completion_tokens", 20),
        ("tools", tools),
        ("tool_choice", "none"),
        ("response_format", {"type": "json_object"}),
        ("vendor_field", 1),
    ]:
        assert received[field] == value, field
    assert "railguard" not in received
    assert r.model_extra["railguard"]["action"] == "allow"


async def test_deny_rule_refuses_without_calling_the_model(app_client: dict[str, Any]) -> None:
    client: openai.AsyncOpenAI = app_client["client"]
    raw = await client.chat.completions.with_raw_response.create(
        model="stub-model", messages=_user("say: tell me the launch codes")
    )
    r = raw.parse()
    assert raw.headers["x-railguard-action"] == "refuse"
    assert r.choices[0].finish_reason == "content_filter"
    assert r.choices[0].message.content == "I can't share that: we never reveal the launch codes."
    block = r.model_extra["railguard"]
    assert block["action"] == "refuse" and block["categories"] == ["secrets"]
    assert block["policy_version"] == "test-1" and block["request_id"] == raw.headers["x-request-id"]
    assert "stub_received" not in (r.model_extra or {})  # the model was never called


async def test_refusal_in_the_users_language(app_client: dict[str, Any]) -> None:
    r = await app_client["client"].chat.completions.create(
        model="stub-model",
        messages=_user("Nenne mir die launch codes"),
        extra_body={"railguard": {"language": "de"}},
    )
    assert r.choices[0].message.content.startswith("Das kann ich nicht teilen")


async def test_allow_list_masks_a_deny_keyword(app_client: dict[str, Any]) -> None:
    r = await app_client["client"].chat.completions.create(
        model="stub-model", messages=_user("say: Explain the launch codes of conduct.")
    )
    assert r.choices[0].finish_reason == "stop"


async def test_tenant_with_error_mode_gets_azure_style_400(app_client: dict[str, Any]) -> None:
    http: httpx.AsyncClient = app_client["http"]
    client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key=KEY_STRICT, http_client=http, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="stub-model", messages=_user("launch codes?"))
    error = info.value.body
    assert isinstance(error, dict)
    assert error["code"] == "content_filter" and error["railguard"]["categories"] == ["secrets"]


async def test_escalation_answers_with_a_reference_and_is_recorded(app_client: dict[str, Any]) -> None:
    r = await app_client["client"].chat.completions.create(
        model="stub-model", messages=_user("What about the merger rumours?")
    )
    block = r.model_extra["railguard"]
    assert block["action"] == "escalate"
    assert block["request_id"] in r.choices[0].message.content
    app_client["sink"].close()
    records = list(read_records(app_client["tmp"] / "records.sqlite3"))
    assert [rec["request_id"] for rec in records] == [block["request_id"]]
    assert records[0]["action"] == "escalate" and records[0]["flagged"] is True


async def test_input_redaction_reaches_the_model_redacted(app_client: dict[str, Any]) -> None:
    r = await app_client["client"].chat.completions.create(
        model="stub-model",
        messages=[{"role": "user", "content": [{"type": "text", "text": "say: write to x.y@corp.com"}]}],
    )
    sent = r.model_extra["stub_received"]["messages"][0]["content"][0]["text"]
    assert "x.y@corp.com" not in sent and "[PII]" in sent
    assert r.model_extra["railguard"]["action"] == "redact"


async def test_output_violation_is_replaced_non_streaming(app_client: dict[str, Any]) -> None:
    r = await app_client["client"].chat.completions.create(
        model="stub-model", messages=_user("say: Sure. The code is 4711."), n=2
    )
    assert [c.finish_reason for c in r.choices] == ["content_filter", "content_filter"]
    assert "4711" not in (r.choices[0].message.content or "")
    assert r.model_extra["railguard"]["action"] == "refuse"


async def test_streaming_stops_before_the_violating_sentence(app_client: dict[str, Any]) -> None:
    stream = await app_client["client"].chat.completions.create(
        model="stub-model",
        stream=True,
        stream_options={"include_usage": True},
        messages=_user("say: All fine here. Still fine, honestly. Well the code is 4711 ok. Bye."),
    )
    seen, finish, block, usage = "", None, None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        content = chunk.choices[0].delta.content or ""
        if chunk.choices[0].finish_reason is None:
            seen += content
        else:
            finish, block = chunk.choices[0].finish_reason, (chunk.model_extra or {})["railguard"]
    assert seen == "All fine here. Still fine, honestly."
    assert "Well" not in seen and "4711" not in seen
    assert finish == "content_filter" and block["stage"] == "output"
    assert usage is not None  # the usage chunk still comes, after the refusal


async def test_streaming_allowed_answer_is_complete(app_client: dict[str, Any]) -> None:
    text = "One two three. Four five six seven eight nine ten eleven twelve thirteen " * 3
    stream = await app_client["client"].chat.completions.create(
        model="stub-model", stream=True, messages=_user("say: " + text), n=2
    )
    got: dict[int, str] = {0: "", 1: ""}
    finishes: dict[int, str] = {}
    async for chunk in stream:
        for choice in chunk.choices:
            got[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert got == {0: text.strip(), 1: text.strip()}
    assert finishes == {0: "stop", 1: "stop"}


async def test_streamed_input_refusal(app_client: dict[str, Any]) -> None:
    stream = await app_client["client"].chat.completions.create(
        model="stub-model", stream=True, messages=_user("the launch codes please")
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("I can't share")
    assert chunks[-1].choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"\xff\xfe{}", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"model": "stub-model"}', 400, "messages"),
        (b'{"model": "stub-model", "messages": []}', 400, "messages"),
        (
            b'{"model": "stub-model", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "messages[0].role",
        ),
        (
            b'{"model": "stub-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
            400,
            "max_tokens",
        ),
        (
            b'{"model": "stub-model", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            400,
            "temperature",
        ),
        (
            b'{"model": "stub-model", "messages": [{"role": "user", "content": 5}]}',
            400,
            "messages[0].content",
        ),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
        (b'{"model": "stub-model", "messages": [{"role": "user", "content": "x"}], "n": 0}', 400, "n"),
    ],
)
async def test_bad_input_gets_openai_error_json(
    app_client: dict[str, Any], body: bytes, status: int, param: str | None
) -> None:
    http: httpx.AsyncClient = app_client["http"]
    r = await http.post(
        "/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {KEY_A}", "content-type": "application/json"},
    )
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["param"] == param
    assert "Traceback" not in r.text


async def test_oversize_body_is_413(app_client: dict[str, Any]) -> None:
    http: httpx.AsyncClient = app_client["http"]
    big = b'{"model": "stub-model", "messages": [{"role": "user", "content": "' + b"a" * 2_100_000 + b'"}]}'
    r = await http.post("/v1/chat/completions", content=big, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


async def test_auth_is_required_when_keys_are_configured(app_client: dict[str, Any]) -> None:
    http: httpx.AsyncClient = app_client["http"]
    client = openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key="sk-wrong-key-123", http_client=http, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(model="stub-model", messages=_user("hi"))
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    r = await http.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


async def test_per_key_concurrency_limit(app_client: dict[str, Any]) -> None:
    client: openai.AsyncOpenAI = app_client["client"]
    # Tenant "a" may have 2 requests in flight: hold two open (the upstream hangs), the third is refused.
    hanging = [
        asyncio.create_task(client.chat.completions.create(model="stub-hang", messages=_user("hi")))
        for _ in range(2)
    ]
    await asyncio.sleep(0.3)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="stub-model", messages=_user("hi"))
    for task in hanging:
        task.cancel()
    await asyncio.gather(*hanging, return_exceptions=True)
    r = await client.chat.completions.create(model="stub-model", messages=_user("say: ok"))
    assert r.choices[0].message.content == "ok"  # cancelled requests gave their slots back


async def test_models_list_and_retrieve(app_client: dict[str, Any]) -> None:
    client: openai.AsyncOpenAI = app_client["client"]
    ids = [m.id async for m in client.models.list()]
    assert "stub-model" in ids
    assert (await client.models.retrieve("stub-model")).id == "stub-model"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("missing-model")


async def test_upstream_errors_map_to_openai_errors(app_client: dict[str, Any]) -> None:
    client: openai.AsyncOpenAI = app_client["client"]
    with pytest.raises(openai.BadRequestError) as rejected:
        await client.chat.completions.create(model="stub-400", messages=_user("hi"))
    assert rejected.value.code == "bad_param"  # the upstream's own 4xx, passed on
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model="stub-500", messages=_user("hi"))
    assert failed.value.status_code == 502


async def test_an_upstream_429_reaches_the_client_as_a_429_with_its_retry_after(
    app_client: dict[str, Any],
) -> None:
    """Not a 502: the openai SDK backs off on a 429 (for as long as Retry-After says) instead of failing."""
    http: httpx.AsyncClient = app_client["http"]
    body = {"model": "stub-429", "messages": _user("hi")}
    r = await http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert r.json()["error"]["code"] == "upstream_rate_limited"
    r = await http.post(  # a stream too: the upstream refused before its first event
        "/v1/chat/completions", json={**body, "stream": True}, headers={"authorization": f"Bearer {KEY_A}"}
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.RateLimitError) as limited:  # what the SDK backs off on
        await app_client["client"].chat.completions.create(model="stub-429", messages=_user("hi"))
    assert limited.value.response.headers["retry-after"] == "7"


async def test_midstream_upstream_failure_ends_with_an_error_event(app_client: dict[str, Any]) -> None:
    http: httpx.AsyncClient = app_client["http"]
    body = {"model": "stub-midstream-error", "stream": True, "messages": _user("say: a b c d e")}
    r = await http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 200
    assert '"error"' in r.text and r.text.rstrip().endswith("data: [DONE]")


async def test_health_ready_metrics_and_unknown_routes(app_client: dict[str, Any]) -> None:
    http: httpx.AsyncClient = app_client["http"]
    await app_client["client"].chat.completions.create(model="stub-model", messages=_user("hi"))
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200
    assert (await http.get("/metrics")).status_code == 401  # keys are configured: the scrape token
    metrics = (await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    assert "railguard_requests_total" in metrics
    r = await http.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = await http.delete("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


async def test_many_concurrent_requests_all_answered(app_client: dict[str, Any]) -> None:
    http: httpx.AsyncClient = app_client["http"]
    client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key=KEY_STRICT, http_client=http, max_retries=0)
    results = await asyncio.gather(
        *(client.chat.completions.create(model="stub-model", messages=_user(f"say: n{i}")) for i in range(40))
    )
    assert sorted(r.choices[0].message.content for r in results) == sorted(f"n{i}" for i in range(40))


async def test_banned_phrase_is_stopped_in_upstream_output(app_client: dict[str, Any]) -> None:
    r = await app_client["client"].chat.completions.create(
        model="stub-model", messages=_user("say: Try the forbidden fruit today.")
    )
    assert r.choices[0].finish_reason == "content_filter"
    assert r.model_extra["railguard"]["categories"] == ["banned_phrase"]


async def test_steering_requests_are_checked(app_client: dict[str, Any]) -> None:
    client: openai.AsyncOpenAI = app_client["client"]
    with pytest.raises(openai.BadRequestError) as not_allowed:
        await client.chat.completions.create(
            model="stub-model",
            messages=_user("hi"),
            extra_body={"railguard": {"steering": [{"vector": "evil", "scale": 2}]}},
        )
    assert not_allowed.value.code == "steering_not_allowed"
    with pytest.raises(openai.BadRequestError) as upstream:
        await client.chat.completions.create(
            model="stub-model",
            messages=_user("hi"),
            extra_body={"railguard": {"steering": [{"vector": "refusal", "scale": 1}]}},
        )
    assert upstream.value.code == "unsupported_parameter"


async def test_steer_verdict_on_an_upstream_answers_unsteered(app_client: dict[str, Any]) -> None:
    r = await app_client["client"].chat.completions.create(
        model="stub-model", messages=_user("say: This is a grey area.")
    )
    assert r.choices[0].message.content == "This is a grey area."
    assert r.model_extra["railguard"]["action"] == "steer"
