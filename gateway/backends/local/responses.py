"""OpenAI's `chat.completion` and `chat.completion.chunk` shapes, built from engine events with the
protocol's builders (`gateway.protocol`), as railguard's own answers are."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.backends.local.params import RowEvent
from gateway.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceDelta,
    Envelope,
    chunk,
    chunk_choice,
    completion,
    usage,
)

__all__ = ["collect_completion", "stream_chunks"]


async def collect_completion(
    events: AsyncIterator[RowEvent], envelope: Envelope, n: int, prompt_tokens: int
) -> ChatCompletion:
    texts = [""] * n
    finish: list[str | None] = [None] * n
    tokens = [0] * n
    async for event in events:
        texts[event.index] += event.text
        tokens[event.index] = event.completion_tokens
        if event.finish_reason is not None:
            finish[event.index] = event.finish_reason
    choices: list[Choice] = [
        {
            "index": i,
            "message": {"role": "assistant", "content": texts[i]},
            "logprobs": None,
            "finish_reason": finish[i],
        }
        for i in range(n)
    ]
    return completion(envelope, choices, usage(prompt_tokens, sum(tokens)))


async def stream_chunks(
    events: AsyncIterator[RowEvent],
    envelope: Envelope,
    n: int,
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[ChatCompletionChunk]:
    """Role chunks, content deltas, a finish chunk per choice, then usage if asked for."""

    def one(index: int, delta: ChoiceDelta, finish_reason: str | None) -> ChatCompletionChunk:
        out = chunk(envelope, [chunk_choice(index, delta, finish_reason)])
        if include_usage:
            out["usage"] = None
        return out

    for index in range(n):
        yield one(index, {"role": "assistant", "content": ""}, None)
    tokens = [0] * n
    async for event in events:
        tokens[event.index] = event.completion_tokens
        if event.text:
            yield one(event.index, {"content": event.text}, None)
        if event.finish_reason is not None:
            yield one(event.index, {}, event.finish_reason)
    if include_usage:
        last = chunk(envelope, [])
        last["usage"] = usage(prompt_tokens, sum(tokens))
        yield last
