"""The ML guard (gateway/guards/classifier.py) around any scorer: stages, languages and findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from classifiers.config import ClassifiersConfig
from classifiers.pii import PiiSpan
from classifiers.scores import TextScores
from gateway.guards.classifier import ClassifierGuard
from gateway.policy.verdict import Stage


@dataclass
class RecordingScorer:
    """Scores every text 0.9 unsafe and remembers what it was asked."""

    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    def score(self, texts: Sequence[str], language: str | None = None) -> list[TextScores]:
        self.calls.append((list(texts), language))
        scores = MappingProxyType({"unsafe": 0.9, "hate": 0.1, "pii": 1.0})
        spans = (PiiSpan("EMAIL", 3, 10, 1.0),)
        thresholds = MappingProxyType({"unsafe": 0.7, "hate": 0.5, "pii": 0.5})
        return [TextScores(scores, language or "en", spans, thresholds) for _ in texts]


def test_the_guard_passes_the_requests_language_and_reports_every_score() -> None:
    guard = ClassifierGuard(ClassifiersConfig(), [Stage.INPUT])
    scorer = RecordingScorer()
    guard.classifier = scorer
    found = guard.check("hi jane@x.org", Stage.INPUT, "de")
    assert scorer.calls == [(["hi jane@x.org"], "de")]  # known language: not detected again
    by_category = {f.category: f for f in found}
    assert by_category["unsafe"].score == 0.9 and by_category["unsafe"].threshold == 0.7
    assert by_category["pii"].span == (3, 10)
    assert guard.check("answer", Stage.OUTPUT, "de") == ()  # a stage it does not guard
    assert len(scorer.calls) == 1
