"""Moderations in OpenAI's shape, served by railguard's own classifiers whatever the backend.

Each result carries OpenAI's 13 categories (`flagged`, `categories`, `category_scores`) and, in its
`railguard` block, our whole taxonomy with the language and any PII spans. An input is scored as the
guards score every text, by what a reader understands from it (`classifiers.canonical`): obfuscated
or encoded, it is flagged as its plain form would be.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import Executor
from typing import Any

from pydantic import ValidationError

from classifiers.taxonomy import OPENAI_CATEGORIES, to_openai
from gateway.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError
from gateway.guards.classifier import PII, ClassifierGuard, Scores
from gateway.moderations.protocol import (
    DEFAULT_MODEL,
    MODELS,
    Moderation,
    ModerationRequest,
    ModerationResult,
)
from gateway.requests import validation_error
from gateway.settings import LimitsConfig

__all__ = ["ModerationService"]


class ModerationService:
    def __init__(self, guard: ClassifierGuard | None, executor: Executor) -> None:
        self._guard = guard
        self._executor = executor

    async def create(self, body: dict[str, Any], limits: LimitsConfig) -> Moderation:
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


def _result(scores: Scores) -> ModerationResult:
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
