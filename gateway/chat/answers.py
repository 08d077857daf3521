"""What railguard writes itself in OpenAI's shapes: refusals (a `chat.completion`, or a stream of
`chat.completion.chunk`s), the refusal chunk that ends a guarded stream, the `railguard` block, and the
SSE framing with its error event. The shapes are `gateway.protocol`'s; what a model answers comes from
its backend and is only passed through (with the `railguard` block added).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson

from gateway.errors import RailguardError, render
from gateway.policy.verdict import Action, Verdict
from gateway.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    Envelope,
    RailguardBlock,
    chunk,
    chunk_choice,
    completion,
    usage,
)

__all__ = [
    "DONE",
    "error_event",
    "railguard_block",
    "refusal",
    "refusal_chunk",
    "refusal_stream",
    "sse",
]

DONE = b"data: [DONE]\n\n"
CONTENT_FILTER = "content_filter"


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


def error_event(error: RailguardError) -> bytes:
    """The error event that ends a stream whose status line has gone out: OpenAI's error object."""
    return sse(render(error))


def railguard_block(
    action: Action,
    categories: Sequence[str],
    *,
    request_id: str,
    policy_version: str,
    verdict: Verdict | None = None,
) -> RailguardBlock:
    """What the policy did; with the `verdict` that acted, the stage and the principle it cited."""
    block: RailguardBlock = {
        "action": action.value,
        "categories": list(categories),
        "request_id": request_id,
        "policy_version": policy_version,
    }
    if verdict is not None and verdict.action is not Action.ALLOW:
        block["stage"] = verdict.stage.value
        block["principle"] = verdict.principle
    return block


def refusal(envelope: Envelope, n: int, message: str | None, block: RailguardBlock) -> ChatCompletion:
    """A prompt refused (or escalated) before any model saw it: the message as every choice."""
    answer: ChatCompletionMessage = {"role": "assistant", "content": message, "refusal": None}
    choices: list[Choice] = [
        {"index": i, "message": answer, "finish_reason": CONTENT_FILTER, "logprobs": None} for i in range(n)
    ]
    body = completion(envelope, choices, usage(0, 0))
    body["system_fingerprint"] = None
    body["railguard"] = block
    return body


async def refusal_stream(
    envelope: Envelope, n: int, message: str | None, block: RailguardBlock, *, include_usage: bool
) -> AsyncIterator[bytes]:
    """The same refusal, streamed: per choice a role chunk, the message, and a `content_filter` finish
    that carries the block; then usage if asked for, and `[DONE]`."""
    for i in range(n):
        last = _chunk(envelope, i, {}, CONTENT_FILTER)
        last["railguard"] = block
        for event in (
            _chunk(envelope, i, {"role": "assistant", "content": ""}, None),
            _chunk(envelope, i, {"content": message or ""}, None),
            last,
        ):
            yield sse(event)
    if include_usage:
        tokens = _chunk(envelope, None, {}, None)
        tokens["usage"] = usage(0, 0)
        yield sse(tokens)
    yield DONE


def refusal_chunk(
    template: ChatCompletionChunk | None,
    envelope: Envelope,
    index: int,
    message: str,
    block: RailguardBlock,
) -> ChatCompletionChunk:
    """The chunk that ends a choice the output guard stopped, in the shape of the backend's own chunks
    (`template`: its id, model and creation time) where there is one."""
    template = template or _chunk(envelope, None, {}, None)
    stop = Envelope(
        template.get("id", envelope.id),
        template.get("model", envelope.model),
        template.get("created", envelope.created),
    )
    out = chunk(stop, [chunk_choice(index, {"content": message}, CONTENT_FILTER)])
    out["system_fingerprint"] = template.get("system_fingerprint")
    out["railguard"] = block
    return out


def _chunk(
    envelope: Envelope, index: int | None, delta: ChoiceDelta, finish_reason: str | None
) -> ChatCompletionChunk:
    out = chunk(envelope, [] if index is None else [chunk_choice(index, delta, finish_reason)])
    out["system_fingerprint"] = None
    return out
