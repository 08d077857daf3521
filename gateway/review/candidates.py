"""Candidate answers for a review item: the served model asked again, ``n`` times, what the record's
conversation asked, so that reviewers can rank the answers (best first) and the ranking becomes
preference pairs (`trainer.safety_data`: the best-ranked answer chosen, the worst rejected).

The model sees the conversation as the record keeps it, de-identified unless the tenant's policy keeps raw
text, and answers with no guard and no steering: reviewers judge what the model itself would say. An
item's candidates are made once (`ReviewStore.set_candidates`), so every reviewer ranks the same answers.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway.backends.base import Generation
from gateway.backends.models import ModelRouter
from gateway.protocol import ChatCompletionRequest
from gateway.review.model import CandidateRequest, ReviewError

__all__ = ["conversation", "regenerate"]

_ROLES = ("system", "user", "assistant")


def conversation(record: dict[str, Any]) -> list[dict[str, str]]:
    """The record's prompt as messages to ask again (text turns only); it must end with the user's turn."""
    messages = [
        {"role": m["role"], "content": m["content"]}
        for m in record.get("prompt") or []
        if m.get("role") in _ROLES and isinstance(m.get("content"), str)
    ]
    if not messages or messages[-1]["role"] != "user":
        raise ReviewError("the record keeps no user prompt to answer again", 409)
    return messages


async def regenerate(
    models: ModelRouter, record: dict[str, Any], ask: CandidateRequest
) -> list[dict[str, Any]]:
    """``ask.n`` answers of the record's model (or ``ask.model``) to the record's conversation:
    ``{"text", "model", "finish_reason"}`` each. A model no longer served is a 404 from the router."""
    model = ask.model or str(record.get("model") or "")
    backend = models.backend_for(model)
    messages = conversation(record)
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "n": ask.n,
        "temperature": ask.temperature,
        "max_tokens": ask.max_tokens,
    }
    generation = Generation(
        request=ChatCompletionRequest.model_validate(body),
        body=body,
        messages=messages,
        request_id=f"review-{uuid.uuid4().hex}",
    )
    completion = await backend.complete(generation)
    choices = sorted(completion.get("choices") or [], key=lambda c: int(c.get("index", 0)))
    return [
        {
            "text": str((c.get("message") or {}).get("content") or ""),
            "model": model,
            "finish_reason": c.get("finish_reason"),
        }
        for c in choices
    ]
