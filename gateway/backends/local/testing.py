"""A tiny random-weight Gemma 3 and a byte-level tokenizer, for tests of the local backend and its
users.

Like httpx's `MockTransport`, it ships with the code so that other packages (steering, constrained
decoding) can test against the same engine without weights. It imports torch: tests only.

The tokenizer has one token per byte, so a character like "é" takes two tokens and its first decodes
to U+FFFD: exactly what incremental detokenization must cope with. Its special tokens carry Gemma's
names.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

from gateway.backends.base import Generation, SteeringSpec
from gateway.backends.local.loader import LoadedModel, stop_token_ids
from gateway.protocol import ChatCompletionRequest

__all__ = ["SPECIAL_TOKENS", "byte_tokenizer", "make_generation", "tiny_gemma", "tiny_loaded"]

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>")


def byte_tokenizer() -> PreTrainedTokenizerFast:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )


def tiny_gemma(vocab_size: int, seed: int = 0, sliding_window: int = 8) -> Gemma3ForCausalLM:
    """Two layers (one sliding-window, one global), hidden size 64, random weights from `seed`."""
    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    model.eval()  # type: ignore[no-untyped-call]
    return model


def tiny_loaded(seed: int = 0) -> LoadedModel:
    tokenizer = byte_tokenizer()
    model = tiny_gemma(len(tokenizer), seed=seed)
    return LoadedModel(model, tokenizer, stop_token_ids(tokenizer), peft=False)


def make_generation(
    content: str = "Hello",
    *,
    model: str = "gemma-3-270m",
    request_id: str = "test",
    steering: tuple[SteeringSpec, ...] = (),
    banned_phrases: tuple[str, ...] = (),
    **fields: Any,
) -> Generation:
    """A `Generation` as the gateway would hand it over: one user message plus request fields."""
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    body.update(fields)
    request = ChatCompletionRequest.model_validate(body)
    return Generation(
        request=request,
        body=body,
        messages=body["messages"],
        request_id=request_id,
        steering=steering,
        banned_phrases=banned_phrases,
    )


def wait_ready(backend: Any, timeout: float = 30.0) -> None:
    """Block until a `LocalBackend` started with `start()` has loaded its engine."""
    deadline = time.monotonic() + timeout
    while backend.engine is None:
        assert time.monotonic() < deadline, "the backend did not become ready"
        time.sleep(0.01)
