"""Chat messages -> prompt token ids, through a Gemma-style chat template.

The embedded base model has no chat template, so railguard ships one
(`gateway/defaults/chat_template.jinja`); a model that brings its own keeps it.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from gateway.errors import InvalidRequestError, UnsupportedParameterError

__all__ = ["default_chat_template", "normalize_messages", "prompt_ids"]

_TEXT_ROLES = frozenset({"system", "developer", "user", "assistant"})


@cache
def default_chat_template() -> str:
    return files("gateway").joinpath("defaults", "chat_template.jinja").read_text(encoding="utf-8")


def normalize_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """`{"role", "content": str}` for each message; text parts joined, other parts refused."""
    normalized = []
    for position, message in enumerate(messages):
        role = message.get("role")
        if role not in _TEXT_ROLES:
            raise UnsupportedParameterError(
                f"the local model does not support messages with role {role!r}",
                param=f"messages[{position}].role",
            )
        normalized.append({"role": str(role), "content": _text(message.get("content"), position)})
    return normalized


def prompt_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids of the whole conversation, ending with the opening of the model's turn."""
    template = getattr(tokenizer, "chat_template", None) or default_chat_template()
    text = tokenizer.apply_chat_template(
        normalize_messages(messages),
        chat_template=template,
        add_generation_prompt=True,
        tokenize=False,
    )
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def _text(content: Any, position: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise UnsupportedParameterError(
                    f"the local model reads text only, not content parts of type {kind!r}",
                    param=f"messages[{position}].content",
                )
            texts.append(str(part.get("text") or ""))
        return "\n".join(texts)
    raise InvalidRequestError(
        "message content must be a string or a list of parts", param=f"messages[{position}].content"
    )
