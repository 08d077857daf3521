"""The model-refusal detector: refusals in several languages, and answers that only look alike."""

from __future__ import annotations

import pytest

from gateway.telemetry import RefusalDetector, is_refusal


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I’m sorry, but I can’t assist with this request.",
        "I cannot help with creating weapons.",
        "As an AI language model, I cannot provide that information.",
        "I must decline to answer.",
        "Lo siento, pero no puedo ayudarte con eso.",
        "Désolé, mais je ne peux pas vous aider avec cela.",
        "Es tut mir leid, aber ich kann dabei nicht helfen.",
        "Mi dispiace, ma non posso aiutarti.",
        "Desculpe, mas não posso ajudar com isso.",
        "Ik kan je daar niet mee helpen.",
        "Извините, но я не могу помочь с этим.",
        "抱歉，我不能提供这些信息。",
        "申し訳ありませんが、それにはお答えできません。",
        "죄송하지만 도와드릴 수 없습니다.",
    ],
)
def test_refusals_are_detected(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "Paris is the capital of France.",
        "I can't wait to help you plan the trip!",
        "Sorry for the delay: here is the recipe you asked for.",
        "Je ne peux pas m'empêcher de sourire.",
        "Here is the summary. " * 40 + "I'm sorry, but I can't help with that.",
    ],
)
def test_answers_that_are_not_refusals(text: str | None) -> None:
    assert not is_refusal(text)


def test_custom_patterns_replace_the_defaults() -> None:
    detector = RefusalDetector({"xx": (r"\bnope\b",)}, window=10)
    assert detector("Nope, not today")
    assert not detector("I'm sorry, but I can't help with that.")
    assert not detector("0123456789 nope")
