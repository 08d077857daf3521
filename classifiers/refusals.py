"""A small detector of a model's own refusals ("I can't help with that"), in several languages.

It reads only the opening of an answer, where models put their refusals, so its cost does not grow
with the length of the answer. Phrases are anchored on verbs of helping, so that "I can't wait" or
"je ne peux pas m'empêcher" do not count.
"""

from __future__ import annotations

import re

__all__ = ["REFUSAL_PATTERNS", "REFUSAL_TRIGGERS", "RefusalDetector", "is_refusal"]

#: Phrase patterns by language; matched case-insensitively in the first `RefusalDetector.window`
#: characters of the answer.
REFUSAL_PATTERNS: dict[str, tuple[str, ...]] = {
    "en": (
        r"\bI(?:'m| am)? (?:sorry|afraid),? (?:but )?I (?:can(?:no|')t|cannot|won't|will not|"
        r"am (?:not able|unable)|'m (?:not able|unable))",
        r"\bI (?:can(?:no|')t|cannot|won't|will not|am unable to|'m unable to|am not able to|"
        r"'m not able to) (?:help|assist|provide|comply|fulfil|support|do that|create|generate|"
        r"write|share|give)",
        r"\bI must (?:respectfully )?decline\b",
        r"\bas an AI(?: language model)?,? I (?:can(?:no|')t|cannot|won't|am not able)",
        r"\bI(?:'m| am) not (?:able|allowed|permitted) to (?:help|assist|provide)",
    ),
    "es": (
        r"\b(?:lo siento|disculpa|perdón),? (?:pero )?no (?:puedo|podré)",
        r"\bno puedo (?:ayudar|ayudarte|asistir|proporcionar|hacer eso|cumplir)",
    ),
    "fr": (
        r"\b(?:désolé|désolée|je suis désolée?),? (?:mais )?je ne (?:peux|pourrai) pas",
        r"\bje ne (?:peux|pourrai) pas (?:vous |t')?(?:aider|assister|fournir|répondre à cette)",
    ),
    "de": (
        r"\b(?:es tut mir leid|entschuldigung),? (?:aber )?ich kann",
        r"\bich kann (?:dir|ihnen|euch)? ?(?:dabei|damit|hierbei)? ?nicht (?:helfen|behilflich)",
        r"\bdabei kann ich (?:dir |ihnen )?nicht helfen",
    ),
    "it": (
        r"\bmi dispiace,? (?:ma )?non posso",
        r"\bnon posso (?:aiutarti|aiutarla|aiutare|assisterti|fornire)",
    ),
    "pt": (
        r"\b(?:desculpe|lamento|sinto muito),? (?:mas )?não (?:posso|consigo)",
        r"\bnão posso (?:ajudar|te ajudar|ajudá-lo|fornecer)",
    ),
    "nl": (
        r"\bik kan (?:je|u) (?:daar|hier)(?:bij|mee)? niet (?:mee )?(?:helpen|van dienst zijn)",
        r"\bhet spijt me,? (?:maar )?ik kan",
    ),
    "ru": (r"\b(?:извините|к сожалению),? (?:но )?я не могу", r"\bя не могу помочь"),
    "zh": (r"抱歉[\uff0c,]?\s*我(?:不能|无法)", r"我(?:不能|无法)(?:帮助|协助|提供|回答)"),
    "ja": (
        r"申し訳(?:ありません|ございません)が",
        r"(?:お手伝い|お答え|提供)(?:でき|いたしかね)ません",
    ),
    "ko": (r"죄송하지만", r"도와(?:드릴|줄) 수 없습니다"),
}


#: Lower-case words at least one of which every default pattern contains: answers with none of them
#: (nearly all answers) are passed over with a few substring tests instead of the regex.
REFUSAL_TRIGGERS: tuple[str, ...] = (
    "sorry", "afraid", "can't", "cannot", "won't", "will not", "unable", "not able", "decline",
    "not allowed", "not permitted", "lo siento", "disculpa", "perdón", "no puedo",
    "désolé", "je ne peux", "je ne pourrai", "leid", "entschuldigung", "ich kann", "kann ich",
    "dispiace", "non posso", "desculpe", "lamento", "sinto muito", "não posso", "ik kan",
    "spijt", "извините", "сожалению", "не могу", "抱歉", "不能", "无法", "申し訳", "ません",
    "죄송", "수 없습니다",
)  # fmt: skip


class RefusalDetector:
    """Says whether an answer opens with a refusal. Thread-safe and cheap.

    `triggers`: lower-case substrings one of which any refusal contains, tested before the regex;
    `None` with custom `patterns` means every answer goes to the regex.
    """

    __slots__ = ("_pattern", "_triggers", "window")

    def __init__(
        self,
        patterns: dict[str, tuple[str, ...]] | None = None,
        *,
        window: int = 300,
        triggers: tuple[str, ...] | None = None,
    ) -> None:
        chosen = REFUSAL_PATTERNS if patterns is None else patterns
        alternatives = [p for phrases in chosen.values() for p in phrases]
        self._pattern = re.compile("|".join(f"(?:{p})" for p in alternatives), re.IGNORECASE)
        self._triggers = REFUSAL_TRIGGERS if patterns is None and triggers is None else triggers
        self.window = window

    def __call__(self, text: str | None) -> bool:
        if not text:
            return False
        opening = text[: self.window].replace("\u2019", "'")
        triggers = self._triggers
        if triggers is not None and not any(map(opening.lower().__contains__, triggers)):
            return False
        return self._pattern.search(opening) is not None


_DEFAULT = RefusalDetector()


def is_refusal(text: str | None) -> bool:
    """The default detector: whether `text` opens with a refusal in a language it knows."""
    return _DEFAULT(text)
