"""Conversations -> token ids and an assistant mask, through the chat template the gateway serves with.

The template is the one `gateway.backends.local.template` renders prompts with (the model's own when it
brings one, else railguard's `chat_template.jinja`), so the tokens a model is trained on are the tokens
it is prompted with. The loss covers each assistant reply and its `<end_of_turn>`, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.local.template import default_chat_template

__all__ = ["END_OF_TURN", "TemplateMismatchError", "Tokenized", "served_template", "tokenize"]

END_OF_TURN = "<end_of_turn>"


class TemplateMismatchError(ValueError):
    """The template asked for is not the one the gateway serves the model with, or it does not render
    conversations as a growing prefix (so the served prompt would differ from the trained one)."""


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    assistant_masks: list[int]


def served_template(tokenizer: Any, requested: Path | None = None) -> str:
    """The template the gateway renders prompts with for this tokenizer; `requested` must equal it."""
    served: str = getattr(tokenizer, "chat_template", None) or default_chat_template()
    if requested is not None:
        text = requested.read_text(encoding="utf-8")
        if text != served:
            raise TemplateMismatchError(
                f"chat template {requested} is not the one the gateway serves this model with "
                "(gateway/defaults/chat_template.jinja, or the model's own): training on it would "
                "teach a prompt format the model is never shown"
            )
    return served


def tokenize(tokenizer: Any, messages: list[dict[str, str]], template: str) -> Tokenized:
    """Token ids of the whole conversation, and a mask of 1s over every assistant reply and its end of
    turn. The text before each reply must be exactly the served prompt for the turns before it."""
    text = _render(tokenizer, messages, template, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], template, generation_prompt=True)
        if not text.startswith(prompt):
            raise TemplateMismatchError(
                f"the template does not render turn {i} as a continuation of the prompt before it"
            )
        end = text.find(END_OF_TURN, len(prompt))
        if end < 0:
            raise TemplateMismatchError(f"the template does not close turn {i} with {END_OF_TURN}")
        spans.append((len(prompt), end + len(END_OF_TURN)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [
        int(any(start <= begin < stop for start, stop in spans)) for begin, _ in encoded["offset_mapping"]
    ]
    return Tokenized(list(encoded["input_ids"]), mask)


def _render(tokenizer: Any, messages: list[dict[str, str]], template: str, *, generation_prompt: bool) -> str:
    text: str = tokenizer.apply_chat_template(
        messages, chat_template=template, add_generation_prompt=generation_prompt, tokenize=False
    )
    return text
