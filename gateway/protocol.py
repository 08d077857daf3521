"""OpenAI's chat completions: the request as pydantic models, the response as typed dicts.

The request's fields are in the order of OpenAI's reference. Unknown fields are kept (`extra="allow"`):
an upstream backend passes them on unchanged, the local backend ignores them and says so in the log.
railguard's own extensions live in one `railguard` block, in the request and in the response.

Responses are plain dicts (`ChatCompletion`, `ChatCompletionChunk`, typed below): an upstream's are
passed through with whatever else it adds, and only what railguard writes itself is built here, by
`completion`, `chunk` and `usage` (shared by the local backend, `gateway.backends.local.responses`, and
railguard's own answers, `gateway.chat.answers`). This module sits below the backends and the chat
service, which both speak it; the moderation endpoint's models are in `gateway.moderations.protocol`.

Types are strict, as OpenAI's are: a string is not a boolean or a number (`"stream": "true"` is a 400),
a boolean is not a number, and a decimal is not an integer. Null is accepted wherever OpenAI accepts it
(every optional parameter; `n` and `stream` then mean their defaults). The models' JSON schemas are the
request bodies of the OpenAPI document (`gateway.openapi`), with the rules the validators add.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


STRICT = ConfigDict(extra="allow", strict=True)


class ContentPart(BaseModel):
    model_config = ConfigDict(
        **STRICT,
        json_schema_extra={
            "if": {"properties": {"type": {"const": "text"}}, "required": ["type"]},
            "then": {"required": ["text"], "properties": {"text": {"type": "string"}}},
        },
    )

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_parts_have_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a part of type 'text' needs a 'text' string")
        return self


# OpenAI's roles whose messages must carry content (an assistant's may hold only tool calls)
CONTENT_REQUIRED = ("system", "developer", "user", "tool")


class ChatMessage(BaseModel):
    # `parse_chat_request` checks the rule; the OpenAPI document states it
    model_config = ConfigDict(
        **STRICT,
        json_schema_extra={
            "if": {"properties": {"role": {"enum": list(CONTENT_REQUIRED)}}, "required": ["role"]},
            "then": {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
        },
    )

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text: a string content, or its text parts joined by newlines."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.text is not None)


class StreamOptions(BaseModel):
    model_config = STRICT

    include_usage: bool = False


class SteeringRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    vector: str
    scale: float = Field(1.0, ge=-16, le=16)


class RailguardOptions(BaseModel):
    """The `railguard` block of a request: our extensions, nothing else."""

    model_config = ConfigDict(extra="forbid", strict=True)

    language: str | None = Field(None, max_length=16)
    steering: list[SteeringRequest] | None = None
    regex: str | None = None
    choice: list[str] | None = None


PositiveInt = Annotated[int, Field(ge=1)]
Bias = Annotated[float, Field(ge=-100, le=100)]
# null means the default (the validator below): the OpenAPI document says so
NullableN = Annotated[int, WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 16},
                                                     {"type": "null"}], "default": 1})]  # fmt: skip
NullableBool = Annotated[
    bool, WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": False})
]


class ChatCompletionRequest(BaseModel):
    # `parse_chat_request` checks the rule; the OpenAPI document states it
    model_config = ConfigDict(
        **STRICT,
        json_schema_extra={
            "if": {"properties": {"stream_options": {"type": "object"}}, "required": ["stream_options"]},
            "then": {"properties": {"stream": {"const": True}}, "required": ["stream"]},
        },
    )

    messages: list[ChatMessage] = Field(min_length=1)
    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, Bias] | None = None
    logprobs: bool | None = None
    max_completion_tokens: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    n: NullableN = Field(1, ge=1, le=16)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: NullableBool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None
    # railguard's own block
    railguard: RailguardOptions | None = None

    @field_validator("n", "stream", mode="before")
    @classmethod
    def _null_is_the_default(cls, value: Any, info: Any) -> Any:
        """OpenAI accepts null for these and reads it as the default (1 choice, no stream)."""
        if value is None:
            return {"n": 1, "stream": False}[info.field_name]
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


# --- responses ---------------------------------------------------------------------------------------


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionMessage(TypedDict):
    role: str
    content: str | None
    refusal: NotRequired[str | None]
    tool_calls: NotRequired[list[dict[str, Any]] | None]


class Choice(TypedDict):
    index: int
    message: ChatCompletionMessage
    finish_reason: str | None
    logprobs: NotRequired[dict[str, Any] | None]


class ChoiceDelta(TypedDict, total=False):
    role: str
    content: str | None
    refusal: str | None
    tool_calls: list[dict[str, Any]] | None


class ChunkChoice(TypedDict):
    index: int
    delta: ChoiceDelta
    finish_reason: str | None
    logprobs: NotRequired[dict[str, Any] | None]


class RailguardBlock(TypedDict):
    """railguard's block in a response: what the policy did, and why when it did more than allow."""

    action: str
    categories: list[str]
    request_id: str
    policy_version: str
    stage: NotRequired[str]
    principle: NotRequired[str | None]


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: NotRequired[Usage | None]
    system_fingerprint: NotRequired[str | None]
    railguard: NotRequired[RailguardBlock]


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: NotRequired[Usage | None]
    system_fingerprint: NotRequired[str | None]
    railguard: NotRequired[RailguardBlock]


class ErrorBody(TypedDict):
    """OpenAI's error object, `{"error": ErrorBody}` in a JSON answer or an SSE event."""

    message: str
    type: str
    param: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every object of one response repeats."""

    id: str
    model: str
    created: int


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(envelope: Envelope, choices: list[Choice], tokens: Usage) -> ChatCompletion:
    return {
        "id": envelope.id,
        "object": "chat.completion",
        "created": envelope.created,
        "model": envelope.model,
        "choices": choices,
        "usage": tokens,
    }


def chunk(envelope: Envelope, choices: list[ChunkChoice]) -> ChatCompletionChunk:
    return {
        "id": envelope.id,
        "object": "chat.completion.chunk",
        "created": envelope.created,
        "model": envelope.model,
        "choices": choices,
    }


def chunk_choice(index: int, delta: ChoiceDelta, finish_reason: str | None) -> ChunkChoice:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
