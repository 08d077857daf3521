"""The ML guard: the safety classifiers (harm categories, jailbreak, prompt injection, PII) as a `Guard`.

The classifier loads in a worker thread at start-up (the first start also builds its ONNX files, a
few seconds); until then the guard is not ready and `/readyz` says so. Scores keep their own calibrated
thresholds (`Finding.threshold`); a policy may set another per category.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from classifiers.config import ClassifiersConfig
from classifiers.pii import PiiSpan, find_pii
from gateway.policy.verdict import Finding, Stage

log = logging.getLogger(__name__)

PII = "pii"


class Scores(Protocol):
    @property
    def scores(self) -> Mapping[str, float]: ...
    @property
    def pii(self) -> tuple[PiiSpan, ...]: ...
    @property
    def thresholds(self) -> Mapping[str, float]: ...
    @property
    def language(self) -> str: ...


class TextClassifier(Protocol):
    def score(self, texts: Sequence[str], language: str | None = None) -> Sequence[Scores]: ...


class ClassifierGuard:
    name = "classifiers"
    blocking = True

    def __init__(self, config: ClassifiersConfig, stages: Sequence[Stage]) -> None:
        self.config = config
        self.stages = frozenset(stages)
        self.classifier: TextClassifier | None = None
        self.error: str | None = None
        self._loading: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self._loading = asyncio.get_running_loop().run_in_executor(None, self._load)

    def _load(self) -> None:
        from classifiers.runtime import SafetyClassifier

        try:
            self.classifier = SafetyClassifier.load(self.config)
            log.info("safety classifiers loaded")
        except Exception as exc:  # reported by /readyz and counted as guard failures
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("safety classifiers failed to load")

    def close(self) -> None:
        close = getattr(self.classifier, "close", None)
        if close is not None:
            close()

    @property
    def ready(self) -> bool:
        return self.classifier is not None

    @property
    def version(self) -> str | None:
        """The loaded classifiers' build, heads and thresholds (``SafetyClassifier.version``)."""
        return getattr(self.classifier, "version", None)

    def check(self, text: str, stage: Stage, language: str) -> tuple[Finding, ...]:
        if stage not in self.stages:
            return ()
        if self.classifier is None:
            raise RuntimeError(self.error or "the safety classifiers are still loading")
        # the request's language is known (the policy's): not detected again for each stage
        [result] = self.classifier.score([text], language=language)
        return findings(result)

    def prescreen(self, text: str, stage: Stage, language: str) -> tuple[Finding, ...]:
        """What this guard can tell without its models, in microseconds: the PII spans (patterns), each
        with score 1.0 (a span of any confidence may be redacted once the models have run)."""
        if stage not in self.stages or not self.config.pii:
            return ()
        return tuple(Finding(PII, 1.0, f"pii:{s.kind}", (s.start, s.end), 0.5) for s in find_pii(text))


def findings(result: Scores) -> tuple[Finding, ...]:
    """Every learned score as a finding (the policy decides what counts), and each PII span."""
    thresholds = result.thresholds
    found = [
        Finding(category, score, "classifier", None, thresholds.get(category, 0.5))
        for category, score in result.scores.items()
        if category != PII
    ]
    found += [
        Finding(PII, span.score, f"pii:{span.kind}", (span.start, span.end), thresholds.get(PII, 0.5))
        for span in result.pii
    ]
    return tuple(found)
