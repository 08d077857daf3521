"""The local backend on a tiny random model: constraints and per-row steering through the API shapes."""

from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import pytest
import torch

from gateway.backends.base import SteeringSpec
from gateway.backends.local import LocalBackend
from gateway.backends.local.testing import make_generation, tiny_loaded, wait_ready
from gateway.errors import InvalidRequestError
from gateway.settings import LocalModelConfig
from steering.vectors import StoredVector

pytestmark = pytest.mark.anyio

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["answer", "score"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}}
EXPECTED_SHORTEST = len('{"answer":"","score":0}')


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    vectors = tmp_path_factory.mktemp("vectors")
    for name, seed in (("up", 1), ("down", 2)):
        direction = torch.randn(64, generator=torch.Generator().manual_seed(seed)) * 40
        StoredVector(name, "tiny", {1: direction}, (1,)).save(vectors)
    config = LocalModelConfig(
        batch_wait_ms=30, default_max_tokens=40, max_context_tokens=512, vectors_dir=vectors
    )
    backend = LocalBackend(config, tmp_path_factory.mktemp("cache"), loader=tiny_loaded)
    asyncio.run(backend.start())
    wait_ready(backend)
    yield backend
    asyncio.run(backend.aclose())


def content(result):
    return result["choices"][0]["message"]["content"]


@pytest.mark.parametrize("max_tokens", [EXPECTED_SHORTEST, EXPECTED_SHORTEST + 4, 80])
async def test_json_schema_output_validates_even_when_max_tokens_runs_out(backend, max_tokens):
    gen = make_generation("j", response_format=RESPONSE_FORMAT, max_tokens=max_tokens, n=2, seed=1)
    result = await backend.complete(gen)
    for choice in result["choices"]:
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
        assert choice["finish_reason"] in ("stop", "length")


async def test_streamed_json_concatenates_to_valid_json(backend):
    gen = make_generation("j", response_format=RESPONSE_FORMAT, max_tokens=30, stream=True, seed=2)
    chunks = [c async for c in await backend.open_stream(gen)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    jsonschema.validate(json.loads(text), SCHEMA)


async def test_json_object_regex_and_choice(backend):
    obj = await backend.complete(make_generation("o", response_format={"type": "json_object"}, seed=3))
    assert isinstance(json.loads(content(obj)), dict)
    regex = {"regex": r"[0-9]{2}-[a-z]{3}"}
    assert re.fullmatch(
        regex["regex"], content(await backend.complete(make_generation("r", railguard=regex)))
    )
    options = ["safe", "unsafe", "not sure"]
    chosen = await backend.complete(make_generation("c", railguard={"choice": options}, temperature=0))
    assert content(chosen) in options


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": RESPONSE_FORMAT, "railguard": {"regex": "a"}}, "railguard.regex"),
        ({"railguard": {"regex": "(open"}}, "railguard.regex"),
        ({"railguard": {"choice": []}}, "railguard.choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, None),
        ({"response_format": RESPONSE_FORMAT, "max_tokens": 5}, "response_format"),
    ],
)
async def test_bad_constraints_are_a_400(backend, fields, param):
    with pytest.raises(InvalidRequestError) as caught:
        await backend.complete(make_generation("x", **fields))
    assert caught.value.status == 400
    if param is not None:
        assert caught.value.param == param


async def test_constraints_compile_once(backend):
    stats = backend.compiler.stats
    await backend.complete(make_generation("x", railguard={"regex": "[ab]{4}"}, max_tokens=4))
    misses = stats.misses
    await backend.complete(make_generation("y", railguard={"regex": "[ab]{4}"}, max_tokens=4))
    assert stats.misses == misses


async def test_concurrent_requests_get_their_own_steering(backend):
    fields = {"temperature": 0, "max_tokens": 8, "logit_bias": {"1": -100, "5": -100}}

    def gen(vector=None):
        steering = () if vector is None else (SteeringSpec(vector=vector, scale=1.0),)
        return make_generation("same prompt", steering=steering, **fields)

    alone = [content(await backend.complete(gen(v))) for v in (None, "up", "down")]
    assert len(set(alone)) == 3  # each vector changes the answer, differently
    batches = backend.engine.stats.batches
    together = await asyncio.gather(*(backend.complete(gen(v)) for v in (None, "up", "down")))
    assert backend.engine.stats.batches == batches + 1  # one batch, three different steerings
    assert [content(r) for r in together] == alone


async def test_a_negative_scale_steers_the_other_way(backend):
    fields = {"temperature": 0, "max_tokens": 8, "logit_bias": {"1": -100, "5": -100}}
    up = await backend.complete(make_generation("p", steering=(SteeringSpec("up", 1.0),), **fields))
    down = await backend.complete(make_generation("p", steering=(SteeringSpec("up", -1.0),), **fields))
    assert content(up) != content(down)
