"""OpenAI's moderations: the request as a pydantic model (strict, unknown fields kept), the response as
typed dicts. `input` is a string, an array of strings (a result each) or an array of parts (one result,
as OpenAI's); railguard's classifiers read text only, so an image part is a 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from gateway.errors import InvalidRequestError
from gateway.protocol import ContentPart

__all__ = ["DEFAULT_MODEL", "MODELS", "Moderation", "ModerationRequest", "ModerationResult"]

DEFAULT_MODEL = "railguard-moderation"
# The ids OpenAI's moderation endpoint takes, all served by railguard's classifiers; any other is a 404,
# as OpenAI answers an unknown moderation model.
MODELS = frozenset(
    {
        DEFAULT_MODEL,
        "omni-moderation-latest",
        "omni-moderation-2024-09-26",
        "text-moderation-latest",
        "text-moderation-stable",
        "text-moderation-007",
    }
)


class ModerationPart(ContentPart):
    """A part of a multi-modal input: ``{"type": "text", "text": ...}`` or ``{"type": "image_url", ...}``."""

    type: Literal["text", "image_url"]


# What `input` may be, for the OpenAPI document (the validator below and `texts` check it)
_INPUT_SCHEMA = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "string"}},
        {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
            },
        },
    ],
    "description": "A string, an array of strings (a result each), or an array of text parts (one "
    "result). OpenAI's image parts get a 400: railguard's classifiers read text only",
}


class ModerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    input: Annotated[str | list[Any], WithJsonSchema(_INPUT_SCHEMA)] = Field(min_length=1)
    model: str | None = Field(None, description=f"One of {', '.join(sorted(MODELS))}")

    @field_validator("input", mode="before")
    @classmethod
    def _string_or_array(cls, value: Any) -> Any:
        if not isinstance(value, str | list):
            raise ValueError("must be a string, an array of strings or an array of parts")
        return value

    def texts(self) -> list[str]:
        """One text per result. As in OpenAI's API, an array of parts is one input (one result): its
        text parts are read together. Our classifiers read text only, so an image is refused rather
        than passed as harmless."""
        if isinstance(self.input, str):
            return [self.input]
        if isinstance(self.input[0], str):
            for i, item in enumerate(self.input):
                if not isinstance(item, str):
                    raise _bad_item(i, "an array that starts with a string holds only strings")
            return list(self.input)
        parts = [_part(i, item) for i, item in enumerate(self.input)]
        for i, part in enumerate(parts):
            if part.type == "image_url":
                raise _bad_item(i, "image inputs are not supported: railguard's moderation reads text only")
        return ["\n".join(p.text or "" for p in parts)]


def _part(i: int, item: Any) -> ModerationPart:
    if not isinstance(item, dict):
        why = (
            "must be a string or a part (an object with a 'type')"
            if i == 0
            else "an array that starts with a part holds only parts (objects with a 'type')"
        )
        raise _bad_item(i, why)
    try:
        return ModerationPart.model_validate(item)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = "".join(f".{p}" for p in first["loc"] if isinstance(p, str))
        param = f"input[{i}]{where}"
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRequestError(
            f"Invalid value for '{param}': {message}.", param=param, code="invalid_value"
        ) from None


def _bad_item(i: int, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid value for 'input[{i}]': {why}.", param=f"input[{i}]", code="invalid_value"
    )


# --- responses ---------------------------------------------------------------------------------------


class PiiSpan(TypedDict):
    kind: str
    start: int
    end: int
    score: float


class RailguardScores(TypedDict):
    """railguard's block in each result: the whole taxonomy, not only OpenAI's categories."""

    flagged_categories: list[str]
    scores: dict[str, float]
    thresholds: dict[str, float]
    language: str
    pii: list[PiiSpan]


class ModerationResult(TypedDict):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    railguard: RailguardScores


class Moderation(TypedDict):
    id: str
    model: str
    results: list[ModerationResult]
