"""Pydantic models of the OpenAI chat-completions request, in the order of OpenAI's reference.

Unknown fields are kept (`extra="allow"`): an upstream backend passes them on unchanged, the local backend
ignores them and says so in the log. railguard's own extensions live in one `railguard` block.
Responses are plain dicts built by the backends in OpenAI's shape (see `gateway.chunks`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_parts_have_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a part of type 'text' needs a 'text' string")
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

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
    model_config = ConfigDict(extra="allow")

    include_usage: bool = Field(False, strict=True)


class SteeringRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vector: str
    scale: float = Field(1.0, ge=-16, le=16)


class RailguardOptions(BaseModel):
    """The `railguard` block of a request: our extensions, nothing else."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(None, max_length=16)
    steering: list[SteeringRequest] | None = None
    regex: str | None = None
    choice: list[str] | None = None


PositiveInt = Annotated[int, Field(ge=1)]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1)
    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = Field(None, strict=True)
    max_completion_tokens: PositiveInt | None = None
    max_tokens: PositiveInt | None = None
    n: int = Field(1, ge=1, le=16, strict=True)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = Field(False, strict=True)
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

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
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
