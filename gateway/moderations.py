"""`POST /v1/moderations` in OpenAI's shape, served by railguard's own classifiers whatever the backend.

Each result carries OpenAI's 13 categories (`flagged`, `categories`, `category_scores`) and, in its
`railguard` block, our whole taxonomy with the language and any PII spans. An input is scored as the
guards score every text, by what a reader understands from it (`classifiers.canonical`): obfuscated
or encoded, it is flagged as its plain form would be.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import Executor
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from classifiers.taxonomy import OPENAI_CATEGORIES, to_openai
from gateway.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from gateway.guards.classifier import PII, ClassifierGuard, Scores
from gateway.protocol import ContentPart
from gateway.requests import validation_error
from gateway.settings import LimitsConfig

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


class ModerationService:
    def __init__(self, guard: ClassifierGuard | None, executor: Executor) -> None:
        self._guard = guard
        self._executor = executor

    async def create(self, body: dict[str, Any], limits: LimitsConfig) -> dict[str, Any]:
        try:
            request = ModerationRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc) from None
        if request.model is not None and request.model not in MODELS:
            raise NotFoundError(
                f"The model `{request.model}` does not exist; moderation models: "
                f"{', '.join(sorted(MODELS))}.",
                param="model",
                code="model_not_found",
            )
        texts = request.texts()
        if len(texts) > limits.max_messages:
            raise InvalidRequestError(
                f"Too many inputs: {len(texts)} > {limits.max_messages}.",
                param="input",
                code="array_above_max_length",
            )
        for i, text in enumerate(texts):
            if len(text) > limits.max_message_chars:
                raise InvalidRequestError(
                    f"Input {i} is longer than {limits.max_message_chars} characters.",
                    param=f"input[{i}]",
                    code="string_above_max_length",
                )
        if self._guard is None:
            raise NotFoundError("Moderations are not enabled on this gateway.", code="unknown_url")
        classifier = self._guard.classifier
        if classifier is None:
            raise ServiceUnavailableError("The safety classifiers are still loading; retry shortly.")
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, classifier.score, texts)
        return {
            "id": f"modr-{uuid.uuid4().hex}",
            "model": request.model or DEFAULT_MODEL,
            "results": [_result(r) for r in results],
        }


def _result(scores: Scores) -> dict[str, Any]:
    categories, category_scores = to_openai(scores.scores, scores.thresholds)
    flagged_ours = [c for c, v in scores.scores.items() if c != PII and v >= scores.thresholds.get(c, 0.5)]
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": category_scores,
        "category_applied_input_types": {name: ["text"] for name in OPENAI_CATEGORIES},
        "railguard": {
            "flagged_categories": flagged_ours,
            "scores": dict(scores.scores),
            "thresholds": dict(scores.thresholds),
            "language": scores.language,
            "pii": [{"kind": s.kind, "start": s.start, "end": s.end, "score": s.score} for s in scores.pii],
        },
    }
