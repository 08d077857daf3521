"""`LocalBackend` on a tiny random-weight model: OpenAI shapes, streaming, errors, cancellation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
import torch

from gateway.backends.base import SteeringSpec
from gateway.backends.local import LocalBackend, SteeringVector
from gateway.backends.local.testing import make_generation, tiny_loaded, wait_ready
from gateway.errors import (
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
    UnsupportedParameterError,
)
from gateway.settings import LocalModelConfig
from steering.types import Condition

pytestmark = pytest.mark.anyio

CONFIG = LocalModelConfig(batch_wait_ms=20, default_max_tokens=12, max_context_tokens=64)
NO_STOP = {"logit_bias": {"1": -100, "5": -100}}


def ascii_window(text, size):
    """The first run of `size` printable ASCII characters (random weights emit broken bytes)."""
    for start in range(len(text) - size + 1):
        window = text[start : start + size]
        if window.isascii() and window.isprintable() and window.strip() == window:
            return window
    raise AssertionError(f"no ASCII window of {size} in {text!r}")


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    backend = LocalBackend(CONFIG, tmp_path_factory.mktemp("cache"), loader=tiny_loaded)
    asyncio.run(backend.start())
    wait_ready(backend)
    yield backend
    asyncio.run(backend.aclose())


async def test_complete_returns_an_openai_chat_completion(backend):
    result = await backend.complete(make_generation("hi", request_id="abc", n=2, **NO_STOP))
    assert result["id"] == "chatcmpl-abc"
    assert result["object"] == "chat.completion"
    assert result["model"] == "gemma-3-270m"
    assert isinstance(result["created"], int)
    assert [c["index"] for c in result["choices"]] == [0, 1]
    for choice in result["choices"]:
        assert choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] == "length"
    usage = result["usage"]
    assert usage["completion_tokens"] == 2 * CONFIG.default_max_tokens
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_greedy_is_deterministic_and_max_tokens_is_honoured(backend):
    gen = make_generation("same", temperature=0, max_tokens=5, **NO_STOP)
    first, second = await backend.complete(gen), await backend.complete(gen)
    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    assert first["usage"]["completion_tokens"] == 5


async def collect(stream):
    return [chunk async for chunk in stream]


async def test_stream_deltas_concatenate_to_the_completion(backend):
    fields = {"temperature": 0, "max_tokens": 10, **NO_STOP}
    whole = await backend.complete(make_generation("s", **fields))
    chunks = await collect(await backend.open_stream(make_generation("s", stream=True, **fields)))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]


async def test_stream_usage_chunk_comes_last_when_asked(backend):
    gen = make_generation("u", stream=True, max_tokens=4, stream_options={"include_usage": True}, **NO_STOP)
    chunks = await collect(await backend.open_stream(gen))
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_stop_string_ends_with_finish_reason_stop(backend):
    fields = {"temperature": 0, "max_tokens": 12, **NO_STOP}
    free = (await backend.complete(make_generation("b", **fields)))["choices"][0]["message"]
    stop = ascii_window(free["content"], 2)
    result = await backend.complete(make_generation("b", stop=[stop], **fields))
    choice = result["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == free["content"][: free["content"].index(stop)]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
    ],
)
async def test_unsupported_parameters_are_refused_with_their_name(backend, fields, param):
    with pytest.raises(UnsupportedParameterError) as caught:
        await backend.complete(make_generation("x", **fields))
    assert caught.value.param == param
    assert caught.value.status == 400


async def test_ignored_fields_and_text_response_format_are_accepted(backend):
    gen = make_generation(
        "x", user="u1", presence_penalty=0.5, response_format={"type": "text"}, max_tokens=2
    )
    result = await backend.complete(gen)
    assert result["usage"]["completion_tokens"] <= 2


async def test_unknown_model_is_not_found(backend):
    with pytest.raises(NotFoundError) as caught:
        await backend.complete(make_generation("x", model="gpt-4o"))
    assert caught.value.code == "model_not_found"


async def test_a_prompt_longer_than_the_context_is_a_400(backend):
    with pytest.raises(InvalidRequestError) as caught:
        await backend.complete(make_generation("y" * 100))
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.status == 400


async def test_invalid_logit_bias_is_a_400(backend):
    with pytest.raises(InvalidRequestError) as caught:
        await backend.complete(make_generation("x", logit_bias={"99999": 1}))
    assert caught.value.param == "logit_bias"


async def test_an_unknown_steering_vector_is_a_400(backend):
    gen = make_generation("x", steering=(SteeringSpec(vector="no-such-vector", scale=1.0),))
    with pytest.raises(InvalidRequestError) as caught:
        await backend.complete(gen)
    assert caught.value.param == "railguard.steering"
    assert caught.value.code == "steering_vector_not_found"


async def test_a_shipped_vector_for_another_model_size_is_a_400(backend):
    gen = make_generation("x", steering=(SteeringSpec(vector="refusal", scale=1.0),))
    with pytest.raises(InvalidRequestError, match=r"layer \d+ does not exist") as caught:
        await backend.complete(gen)  # the shipped vector is for gemma-3-270m, not the 2-layer tiny model
    assert caught.value.param == "railguard.steering"


async def test_banned_phrases_keep_the_phrase_out(backend):
    fields = {"temperature": 0, "max_tokens": 8, **NO_STOP}
    free = (await backend.complete(make_generation("b", **fields)))["choices"][0]["message"]
    phrase = ascii_window(free["content"], 2)
    banned = await backend.complete(make_generation("b", banned_phrases=(phrase,), **fields))
    assert phrase not in banned["choices"][0]["message"]["content"]


async def test_a_cancelled_request_frees_the_engine(backend):
    engine = backend.engine
    steps_before = engine.stats.decode_row_steps
    task = asyncio.create_task(
        backend.complete(make_generation("c", max_tokens=50, max_completion_tokens=50, **NO_STOP))
    )
    while engine.stats.decode_row_steps < steps_before + 2:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await backend.complete(make_generation("d", max_tokens=1))  # runs once the batch has ended
    assert engine.stats.decode_row_steps - steps_before < 40


async def test_closing_a_stream_early_cancels_its_row(backend):
    engine = backend.engine
    steps_before = engine.stats.decode_row_steps
    stream = await backend.open_stream(make_generation("e", stream=True, max_tokens=50, **NO_STOP))
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    await backend.complete(make_generation("f", max_tokens=1))
    assert engine.stats.decode_row_steps - steps_before < 40


async def test_models_lists_the_base_and_its_adapters(tmp_path):
    config = LocalModelConfig(name="local-a", adapters={"tuned": tmp_path})
    cards = LocalBackend(config, tmp_path, loader=tiny_loaded).models()
    assert [(c.id, c.owned_by, c.backend) for c in cards] == [
        ("local-a", "railguard", "local"),  # the embedded model with the shipped adapter merged in
        ("gemma-3-270m-base", "railguard", "local"),  # its untuned weights
        ("tuned", "railguard", "local"),
    ]
    assert {c.max_tokens for c in cards} == {config.max_context_tokens}  # what a request may ask: 400 past it
    untuned = LocalModelConfig(name="local-a", tuned=False, adapters={"tuned": tmp_path})
    assert [c.id for c in LocalBackend(untuned, tmp_path, loader=tiny_loaded).models()] == [
        "local-a",
        "tuned",
    ]


async def test_requests_before_the_model_is_loaded_get_503(tmp_path):
    release = threading.Event()

    def slow_loader():
        release.wait(10)
        return tiny_loaded()

    backend = LocalBackend(CONFIG, tmp_path, loader=slow_loader)
    await backend.start()
    assert not await backend.ready()
    with pytest.raises(ServiceUnavailableError) as caught:
        await backend.complete(make_generation("x"))
    assert caught.value.status == 503
    release.set()
    await asyncio.to_thread(wait_ready, backend)
    assert await backend.ready()
    await backend.aclose()


async def test_a_failed_load_keeps_answering_503(tmp_path):
    def broken_loader():
        raise OSError("disk on fire")

    backend = LocalBackend(CONFIG, tmp_path, loader=broken_loader)
    await backend.start()
    await asyncio.to_thread(backend._thread.join, 10)
    assert not await backend.ready()
    with pytest.raises(ServiceUnavailableError, match="failed to load"):
        await backend.open_stream(make_generation("x", stream=True))


async def test_steering_through_a_resolver_changes_the_text(tmp_path):
    vector = torch.randn(64, generator=torch.Generator().manual_seed(1)) * 50

    def resolve(spec):
        assert spec.vector == "refusal"
        return SteeringVector(layer=1, vector=vector * spec.scale)

    backend = LocalBackend(CONFIG, tmp_path, loader=tiny_loaded, resolve_steering=resolve)
    await backend.start()
    await asyncio.to_thread(wait_ready, backend)
    fields = {"temperature": 0, "max_tokens": 8, **NO_STOP}
    plain = await backend.complete(make_generation("s", **fields))
    steer = (SteeringSpec(vector="refusal", scale=1.0),)
    steered = await backend.complete(make_generation("s", steering=steer, **fields))
    await backend.aclose()
    assert steered["choices"][0]["message"] != plain["choices"][0]["message"]


@pytest.mark.parametrize(
    "vector",
    [
        SteeringVector(layer=0, vector=torch.ones(3)),
        SteeringVector(layer=0, vector=torch.ones(64), condition=Condition(16, torch.ones(64), 0.3)),
        SteeringVector(layer=0, vector=torch.ones(64), condition=Condition(1, torch.ones(3), 0.3)),
    ],
    ids=["shape", "condition-layer", "condition-shape"],
)
async def test_a_steering_vector_that_does_not_fit_the_model_is_a_400(tmp_path, vector):
    def resolve(spec):
        return vector

    backend = LocalBackend(CONFIG, tmp_path, loader=tiny_loaded, resolve_steering=resolve)
    await backend.start()
    await asyncio.to_thread(wait_ready, backend)
    steer = (SteeringSpec(vector="v", scale=1.0),)
    with pytest.raises(InvalidRequestError) as caught:
        await backend.complete(make_generation("s", steering=steer))
    await backend.aclose()
    assert caught.value.param == "railguard.steering"


async def test_invalid_parameters_are_a_400_even_while_loading(tmp_path):
    backend = LocalBackend(CONFIG, tmp_path, loader=tiny_loaded)  # never started
    with pytest.raises(UnsupportedParameterError):
        await backend.complete(make_generation("x", logprobs=True))


async def test_any_integer_seed_is_accepted(backend):
    for seed in (-1, 2**70):
        result = await backend.complete(make_generation("x", seed=seed, max_tokens=2))
        assert result["choices"][0]["finish_reason"] in ("stop", "length")


def test_importing_the_gateway_does_not_import_torch():
    code = (
        "import sys, gateway, gateway.backends.local; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_past_the_models_context_is_a_400_that_names_the_limit(backend, field):
    """OpenAI refuses a completion limit the model cannot reach instead of generating until it stops."""
    limit = backend._config.max_context_tokens
    with pytest.raises(InvalidRequestError) as caught:
        await backend.complete(make_generation("x", **{field: 1_000_000_000_000}))
    assert caught.value.param == field and caught.value.code == "invalid_value"
    assert f"at most {limit}" in caught.value.message
    result = await backend.complete(make_generation("x", **{field: limit, "temperature": 0}))
    assert result["choices"][0]["finish_reason"] in ("stop", "length")  # the limit itself is fine
