"""OpenAI's `chat.completion` and `chat.completion.chunk` shapes, built from engine events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway.backends.local.params import RowEvent

__all__ = ["Identity", "collect_completion", "stream_chunks"]


@dataclass(frozen=True)
class Identity:
    """What every object of one response repeats."""

    id: str
    model: str
    created: int


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def collect_completion(
    events: AsyncIterator[RowEvent], ident: Identity, n: int, prompt_tokens: int
) -> dict[str, Any]:
    texts = [""] * n
    finish: list[str | None] = [None] * n
    tokens = [0] * n
    async for event in events:
        texts[event.index] += event.text
        tokens[event.index] = event.completion_tokens
        if event.finish_reason is not None:
            finish[event.index] = event.finish_reason
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": texts[i]},
            "logprobs": None,
            "finish_reason": finish[i],
        }
        for i in range(n)
    ]
    return {
        "id": ident.id,
        "object": "chat.completion",
        "created": ident.created,
        "model": ident.model,
        "choices": choices,
        "usage": usage(prompt_tokens, sum(tokens)),
    }


async def stream_chunks(
    events: AsyncIterator[RowEvent],
    ident: Identity,
    n: int,
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[dict[str, Any]]:
    """Role chunks, content deltas, a finish chunk per choice, then usage if asked for."""
    extra: dict[str, Any] = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _chunk(ident, [choice], extra)

    for index in range(n):
        yield chunk(index, {"role": "assistant", "content": ""}, None)
    tokens = [0] * n
    async for event in events:
        tokens[event.index] = event.completion_tokens
        if event.text:
            yield chunk(event.index, {"content": event.text}, None)
        if event.finish_reason is not None:
            yield chunk(event.index, {}, event.finish_reason)
    if include_usage:
        yield _chunk(ident, [], {"usage": usage(prompt_tokens, sum(tokens))})


def _chunk(ident: Identity, choices: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ident.id,
        "object": "chat.completion.chunk",
        "created": ident.created,
        "model": ident.model,
        "choices": choices,
        **extra,
    }
