"""Banned phrases on text: every tokenization that would complete a phrase is refused."""

from __future__ import annotations

import torch

from gateway.backends.local.testing import byte_tokenizer
from steering.banned import BannedPhrases
from steering.vocabulary import TokenVocabulary


def vocab_of(tokens: list[str]) -> TokenVocabulary:
    table = tuple(t.encode() for t in tokens)
    single = {t.encode()[0]: i for i, t in enumerate(tokens) if len(t.encode()) == 1}
    return TokenVocabulary(table, frozenset(), single, len(tokens))


TOKENS = [" the", " forbidden", " fruit", " fruits", "s", " FRUIT", " forbidden fruit!", " fr", "uit", " ok"]


def allowed(processor, generated):
    logits = processor(generated, torch.zeros(len(TOKENS)))
    return {TOKENS[i] for i in range(len(TOKENS)) if torch.isfinite(logits[i])}


def test_any_token_that_completes_the_phrase_is_banned():
    processor = BannedPhrases(vocab_of(TOKENS), ["Forbidden Fruit"])
    after = allowed(processor, [TOKENS.index(" the"), TOKENS.index(" forbidden")])
    assert {" fruit", " fruits", " FRUIT"}.isdisjoint(after)
    assert {" ok", "s", " fr"} <= after  # " fr" is not the phrase yet
    assert "uit" not in allowed(processor, [TOKENS.index(" forbidden"), TOKENS.index(" fr")])
    assert "uit" in allowed(processor, [TOKENS.index(" the"), TOKENS.index(" fr")])
    assert " forbidden fruit!" not in allowed(processor, [])  # the whole phrase inside one token


def test_sampling_through_the_processor_never_writes_the_phrase():
    tokenizer = byte_tokenizer()
    stops = frozenset({tokenizer.eos_token_id})
    vocab = TokenVocabulary.from_tokenizer(tokenizer, stops, len(tokenizer))
    processor = BannedPhrases(vocab, ["ab"])
    a, b = vocab.single_byte[ord("a")], vocab.single_byte[ord("b")]
    generator = torch.Generator().manual_seed(0)
    generated: list[int] = []
    for _ in range(200):
        logits = torch.full((vocab.logits_size,), -50.0)
        logits[[a, b]] = torch.randn(2, generator=generator)  # the model only wants a and b
        token = int(torch.argmax(processor(generated, logits)))
        generated.append(token)
    text = b"".join(vocab.token_bytes[t] or b"" for t in generated).decode()
    assert "ab" not in text and text.count("a") > 10
