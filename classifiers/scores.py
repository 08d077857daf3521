"""``TextScores``: what the classifiers say about one text (scores, language, PII spans, thresholds)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from classifiers.pii import PiiSpan
from classifiers.taxonomy import PII, to_llama_guard, to_openai

__all__ = ["TextScores"]


@dataclass(frozen=True, slots=True)
class TextScores:
    """Scores in [0, 1] for every enabled category, the language, PII spans and the thresholds."""

    scores: Mapping[str, float]
    language: str
    pii: tuple[PiiSpan, ...]
    thresholds: Mapping[str, float]

    def flagged(self, category: str) -> bool:
        return self.scores.get(category, 0.0) >= self.thresholds.get(category, 0.5)

    @property
    def flagged_categories(self) -> tuple[str, ...]:
        return tuple(c for c in self.scores if self.flagged(c))

    @property
    def harmful(self) -> bool:
        """Any hazard or attack: what a prompt guard refuses on (PII is redacted, not refused)."""
        return any(c != PII for c in self.flagged_categories)

    def to_openai(self) -> tuple[dict[str, bool], dict[str, float]]:
        return to_openai(self.scores, self.thresholds)

    def to_llama_guard(self) -> list[str]:
        return to_llama_guard(self.scores, self.thresholds)
