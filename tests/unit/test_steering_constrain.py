"""Constrained decoding: vocabulary bytes, compile cache, and answers that complete within budget."""

from __future__ import annotations

import json
import re
import time

import jsonschema
import pytest
import torch

from gateway.backends.local.testing import byte_tokenizer
from steering.constrain import ConstraintCompiler, ConstraintError, ConstraintSpec
from steering.vocabulary import TokenVocabulary, _token_bytes

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def compiler():
    tokenizer = byte_tokenizer()
    stops = frozenset({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")})
    return ConstraintCompiler(TokenVocabulary.from_tokenizer(tokenizer, stops, len(tokenizer)))


def decode(compiler, spec, max_tokens, seed):
    """Sample with random logits (a model with no idea of the format) through the processor."""
    vocab = compiler.vocab
    processor = compiler.processor(spec, max_tokens)
    generator = torch.Generator().manual_seed(seed)
    generated: list[int] = []
    while len(generated) < max_tokens:
        logits = processor(generated, torch.randn(vocab.logits_size, generator=generator) * 3)
        token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        if token in vocab.stop_ids:
            break
        generated.append(token)
    return b"".join(vocab.token_bytes[t] or b"" for t in generated).decode("utf-8")


@pytest.mark.parametrize("max_tokens", [29, 33, 60, 200])
def test_json_schema_answers_validate_whatever_the_budget(compiler, max_tokens):
    spec = ConstraintSpec.json_schema(SCHEMA)
    assert compiler.compile(spec).shortest == len('{"name":"","age":0,"tags":[]}')
    for seed in range(3):
        text = decode(compiler, spec, max_tokens, seed)
        jsonschema.validate(json.loads(text), SCHEMA)
        assert list(json.loads(text)) == ["name", "age", "tags"]  # the schema's order, not sorted


def test_regex_and_choice_answers_match(compiler):
    pattern = r"(yes|no), because [a-z ]{1,40}\."
    for seed in range(3):
        assert re.fullmatch(pattern, decode(compiler, ConstraintSpec.regex(pattern), 18, seed))
    options = ["red", "green (light)", "a+b?"]
    for seed in range(5):
        assert decode(compiler, ConstraintSpec.choice(options), 20, seed) in options


def test_json_object_is_a_flat_object(compiler):
    from gateway.backends.local.plan import JSON_OBJECT_SCHEMA

    text = decode(compiler, ConstraintSpec.json_schema(JSON_OBJECT_SCHEMA), 40, 1)
    assert isinstance(json.loads(text), dict)


def test_compiled_constraints_are_cached(compiler):
    spec = ConstraintSpec.regex(r"[0-9]{3}-[a-z]{2}")
    first = compiler.compile(spec)
    hits = compiler.stats.hits
    started = time.perf_counter()
    again = compiler.compile(ConstraintSpec.regex(r"[0-9]{3}-[a-z]{2}"))
    assert time.perf_counter() - started < 0.010
    assert again is first and compiler.stats.hits == hits + 1


def test_a_budget_below_the_shortest_answer_is_refused(compiler):
    with pytest.raises(ConstraintError, match="max_tokens is 5"):
        compiler.processor(ConstraintSpec.json_schema(SCHEMA), 5)


@pytest.mark.parametrize("pattern", ["(unclosed", "a{5,2}", "[a-z]{3000}"])
def test_invalid_regexes_are_constraint_errors(compiler, pattern):
    with pytest.raises(ConstraintError):
        compiler.compile(ConstraintSpec.regex(pattern))


def test_a_processor_forced_off_its_path_only_lets_the_row_stop(compiler):
    vocab = compiler.vocab
    processor = compiler.processor(ConstraintSpec.regex("abc"), 10)
    wrong = vocab.single_byte[ord("z")]
    logits = processor([wrong], torch.zeros(vocab.logits_size))
    assert processor.broken
    assert {int(i) for i in torch.isfinite(logits).nonzero()} == set(vocab.stop_ids)


def test_token_bytes_of_sentencepiece_tokens():
    assert _token_bytes("\u2581hello", byte_level=False) == b" hello"
    assert _token_bytes("<0x0A>", byte_level=False) == b"\n"
    assert _token_bytes("\u0120hi", byte_level=True) == b" hi"


@pytest.mark.parametrize("max_tokens", [29, 31, 100])
def test_greedy_rows_complete_in_budget_too(compiler, max_tokens):
    spec = ConstraintSpec.json_schema(SCHEMA)
    vocab = compiler.vocab
    for seed in range(3):
        processor = compiler.processor(spec, max_tokens, greedy=True)
        generator = torch.Generator().manual_seed(seed)
        generated: list[int] = []
        while len(generated) < max_tokens:
            logits = processor(generated, torch.randn(vocab.logits_size, generator=generator))
            token = int(torch.argmax(logits))
            if token in vocab.stop_ids:
                break
            generated.append(token)
        text = b"".join(vocab.token_bytes[t] or b"" for t in generated).decode("utf-8")
        jsonschema.validate(json.loads(text), SCHEMA)
