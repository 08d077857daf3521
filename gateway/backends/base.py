"""The seam between the gateway and whatever produces completions.

A backend speaks OpenAI's response shapes as plain dicts (`gateway.protocol`): `complete` returns a
`chat.completion` object, `open_stream` returns an async iterator of `chat.completion.chunk` objects.
Errors raised before the first chunk (by `complete` or by `open_stream` itself) become HTTP errors;
errors raised while iterating end the stream with an error event, since the status line has already
gone out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest


@dataclass(frozen=True)
class ModelCard:
    id: str
    owned_by: str
    created: int
    backend: str
    # What produced the answers, for the decision records (audits): the LoRA adapter merged or selected
    # for this id, as `<name>@<first 12 hex of its weights' sha256>`, or None for plain weights.
    adapter: str | None = None
    # The most completion tokens a request may ask for (max_tokens / max_completion_tokens): a local
    # model's context, an upstream's configured ceiling. None: unbounded here (the backend decides).
    max_tokens: int | None = None

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


@dataclass(frozen=True)
class SteeringSpec:
    """A steering vector to add to the residual stream while generating (applied by local backends)."""

    vector: str
    scale: float


@dataclass(frozen=True)
class Generation:
    """One request as the gateway hands it to a backend, after the input guard.

    `body` is the client's JSON as received (unknown fields included, `railguard` removed), for backends
    that forward it; `request` is the validated view of the same body; `messages` are what the model
    should see (the input guard may have redacted them).
    """

    request: ChatCompletionRequest
    body: dict[str, Any]
    messages: list[dict[str, Any]]
    request_id: str
    steering: tuple[SteeringSpec, ...] = ()
    banned_phrases: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """Where completions come from: an upstream OpenAI-compatible server, or a model in this process."""

    name: str

    async def start(self) -> None:
        """Begin connecting or loading; return quickly (readiness is reported by `ready`)."""

    async def aclose(self) -> None:
        """Release connections, threads and models."""

    def models(self) -> list[ModelCard]:
        """The models this backend serves now."""

    async def ready(self) -> bool:
        """True once every model is loaded or the upstream answers."""

    async def complete(self, generation: Generation) -> ChatCompletion:
        """A whole `chat.completion` object."""

    async def open_stream(self, generation: Generation) -> AsyncIterator[ChatCompletionChunk]:
        """Connect, then return an iterator of `chat.completion.chunk` objects."""
