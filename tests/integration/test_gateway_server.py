"""`railguard serve` as a newcomer runs it, driven by the official openai client over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.servers import free_port, gateway, stub_upstream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    with stub_upstream(token_delay_ms=2) as url:
        yield url


def _config(tmp: Path, policy: Path, upstream: dict[str, object]) -> Path:
    config = tmp / "railguard.yaml"
    settings = {"upstream": upstream, "policy_file": str(policy), "classifiers": {"enabled": False}}
    config.write_text(yaml.safe_dump(settings))
    return config


@pytest.fixture(scope="module")
def gateway_url(upstream_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("gw")
    policy = Path(__file__).parents[1] / "data" / "policy.yaml"
    config = _config(tmp, policy, {"url": upstream_url, "timeout_s": 1.5})
    with gateway(config, cache_dir=tmp) as url:
        yield url


@pytest.fixture
def client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway_url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


def test_models_are_the_upstreams(client: openai.OpenAI) -> None:
    assert "stub-model" in [m.id for m in client.models.list()]


def test_chat_non_streaming_and_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": "say: Hi. Bye."}]
    )
    assert r.choices[0].message.content == "Hi. Bye." and r.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(
        model="stub-model",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "say: One sentence. And another one here."}],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One sentence. And another one here."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_deny_rule_refusal_in_both_modes(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What are the launch codes?"}]
    r = client.chat.completions.create(model="stub-model", messages=messages)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "content_filter"
    chunks = list(
        client.chat.completions.create(
            model="stub-model",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
    )
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert (chunks[-1].model_extra or {})["railguard"]["action"] == "refuse"


def test_stream_stopped_before_the_violating_sentence(gateway_url: str) -> None:
    # Read the raw SSE bytes as they arrive: nothing of the third sentence may ever be on the wire.
    body = {
        "model": "stub-model",
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": "say: This is fine. So is this. Now the code is 1234 for you. End.",
            }
        ],
    }
    with httpx.stream("POST", gateway_url + "/v1/chat/completions", json=body, timeout=10) as r:
        wire = b"".join(r.iter_raw()).decode()
    events = [json.loads(line[6:]) for line in wire.splitlines() if line.startswith("data: {")]
    released = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if e["choices"] and e["choices"][0]["finish_reason"] is None
    )
    assert released == "This is fine. So is this."
    for leaked in ("Now", "1234", "End."):
        assert leaked not in wire
    assert '"finish_reason":"content_filter"' in wire and wire.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{", 400),
        (b'{"model": "stub-model", "messages": []}', 400),
        (
            b'{"model": "stub-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}',
            400,
        ),
        (b'{"model": "ghost", "messages": [{"role": "user", "content": "x"}]}', 404),
        (b"\xc3\x28", 400),
    ],
)
def test_bad_inputs_over_http(gateway_url: str, body: bytes, status: int) -> None:
    r = httpx.post(
        gateway_url + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == status
    assert set(r.json()["error"]) >= {"message", "type", "param", "code"}
    assert httpx.get(gateway_url + "/healthz").status_code == 200  # still up


def test_upstream_that_hangs_gets_504_in_bounded_time(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="stub-hang", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 504
    assert time.monotonic() - started < 5  # the configured 1.5 s read timeout, plus slack


def test_upstream_that_is_down_gets_502_in_bounded_time(tmp_path: Path) -> None:
    policy = Path(__file__).parents[1] / "data" / "policy.yaml"
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    config = _config(tmp_path, policy, {"url": dead, "models": ["remote-model"], "connect_timeout_s": 1})
    with gateway(config, cache_dir=tmp_path, ready="/healthz") as url:
        assert httpx.get(url + "/readyz").status_code == 503  # not ready while the upstream is down
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        started = time.monotonic()
        with client, pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="remote-model", messages=[{"role": "user", "content": "hi"}])
        assert info.value.status_code == 502
        assert info.value.code == "upstream_unavailable"
        assert time.monotonic() - started < 5
