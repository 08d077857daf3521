"""``SafetyClassifier``: text -> per-category scores, language and PII spans, on ONNX Runtime.

The encoder runs in ONNX Runtime (int8 by default), the heads in numpy. ``score`` is thread-safe and
meant for worker threads; with ``coalesce`` on, concurrent calls share ONNX batches.

``SafetyClassifier.open`` opens artefacts that are built already; ``SafetyClassifier.load`` first
builds what is missing through :func:`classifiers.export.ensure_built` (torch, the first use only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

import classifiers.language as langid
from classifiers.batching import Coalescer
from classifiers.built import BuiltArtifacts, fused_calibration, trained_paths
from classifiers.canonical import views
from classifiers.cascade import Cascade, Mask, fuse
from classifiers.config import ClassifiersConfig
from classifiers.early_exit import EarlyExit
from classifiers.heads import Calibration, Heads
from classifiers.onnx_encoder import Encoder
from classifiers.pii import PiiSpan, find_pii
from classifiers.scores import TextScores
from classifiers.taxonomy import PII
from classifiers.windows import Array, max_by_owner

__all__ = ["Fused", "SafetyClassifier", "fusion_name"]


@dataclass(frozen=True, slots=True)
class Fused:
    """The second model of a late fusion: its encoder, its heads, and the thresholds of the mean."""

    artifacts: BuiltArtifacts
    encoder: Encoder
    heads: Heads
    calibration: Path


def fusion_name(first: BuiltArtifacts, second: BuiltArtifacts) -> str:
    """What a fused calibration records as its encoder: both built encoders' keys."""
    return f"{first.directory.name}+{second.directory.name}"


def _open_model(config: ClassifiersConfig) -> tuple[BuiltArtifacts, Encoder, Heads]:
    """One model's built encoder and trained heads, opened; never built here."""
    artifacts = trained_paths(config)
    if missing := artifacts.missing:
        raise FileNotFoundError(
            f"encoder {config.encoder!r} is not built in {artifacts.directory} "
            f"({', '.join(p.name for p in missing)} missing): build it (`railguard classifiers build "
            f"--encoder {config.encoder}`), or load with SafetyClassifier.load, which builds what is missing"
        )
    return (
        artifacts,
        Encoder(artifacts, config, lazy=config.uses_early_exit),
        Heads.load(artifacts.heads),
    )


def _model_probabilities(encoder: Encoder, heads: Heads, texts: list[str]) -> Array:
    """One model's head probabilities ``[len(texts), len(heads)]``: each head's max over a text's windows."""
    if not texts:
        return np.zeros((0, len(heads.names)), dtype=np.float32)
    emb, owners = encoder.embed(texts)
    return max_by_owner(heads(emb), owners, len(texts))


class SafetyClassifier:
    """Build with :meth:`load`; call :meth:`score` from worker threads; :meth:`close` when done.

    With ``config.fuse`` the probabilities are the mean of two models' (each text's max over its
    windows, per model), judged against the thresholds calibrated for that mean; with
    ``fuse.cascade`` the second model reads only the texts the first is unsure of
    (:mod:`classifiers.cascade`). With early exits (e5-small's default) the heads on the encoder's
    3rd block read every text, those on its 6th the texts they are unsure of, and the full encoder
    only the texts those are unsure of (:mod:`classifiers.early_exit`).
    """

    def __init__(
        self,
        config: ClassifiersConfig,
        artifacts: BuiltArtifacts,
        encoder: Encoder,
        heads: Heads,
        fused: Fused | None = None,
        early: EarlyExit | None = None,
    ):
        calibration = own = Calibration.load(artifacts.calibration)
        if calibration.encoder != artifacts.directory.name:
            raise ValueError(
                f"heads in {artifacts.calibration.parent} were trained on {calibration.encoder}, "
                f"not on {artifacts.directory.name}: retrain them (railguard classifiers train)"
            )
        if early is not None and fused is not None:
            raise ValueError("an early exit and a fusion cannot both serve (their thresholds differ)")
        if early is not None:
            calibration = early.trained.calibration
        if fused is not None:
            if fused.heads.names != heads.names:
                raise ValueError(f"fused heads {fused.heads.names} differ from {heads.names}")
            calibration = Calibration.load(fused.calibration)
            expected = fusion_name(artifacts, fused.artifacts)
            if calibration.encoder != expected:
                raise ValueError(
                    f"{fused.calibration} was calibrated for {calibration.encoder}, not {expected}: "
                    f"recalibrate it (railguard classifiers calibrate-fusion --fuse {fused.encoder.name})"
                )
        self._cascade: Cascade | None = None
        if fused is not None and config.fuse is not None and config.fuse.cascade:
            self._cascade = Cascade.calibrated(
                heads.names, own, calibration, source=fused.calibration, fuse=fused.encoder.name
            )
        self.config = config
        self.artifacts = artifacts
        self.calibration = calibration
        trained = [artifacts.heads, artifacts.calibration]
        if fused is not None:
            trained += [fused.artifacts.heads, fused.artifacts.calibration, fused.calibration]
        if early is not None:
            trained += early.trained.files
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in trained)).hexdigest()[:12]
        # which encoder build(s) at which precision, heads and thresholds judged: for decision records
        variant = artifacts.variant(config.precision)
        if early is not None:  # e5-small-…+exit3+exit6@int8-smooth0.8-u8+cascade6,2.5#…
            exits, margins = early.trained.exits, early.trained.margins
            self.version = f"{artifacts.directory.name}{exits}@{variant}+cascade{margins}#{digest}"
        else:
            cascade = "" if self._cascade is None else f"+cascade{self._cascade.margin:g}"
            self.version = f"{calibration.encoder}@{variant}{cascade}#{digest}"
        self._encoder = encoder
        self._heads = heads
        self._fused = fused
        self._early = early
        self._columns = [heads.names.index(h) for h in config.heads if h in heads.names]
        self._names = [heads.names[c] for c in self._columns]
        thresholds = {h: calibration.thresholds.get(h, 0.5) for h in self._names}
        if config.pii:
            thresholds[PII] = calibration.thresholds.get(PII, 0.5)
        self.thresholds: Mapping[str, float] = MappingProxyType(thresholds)
        # int8 runs each window alone (Encoder), so merging callers would only queue them behind one
        # thread: concurrent int8 calls run side by side instead (4 threads on 2 cores: 2.1x the
        # texts/s of the coalesced queue, docs/classifiers.md "How a text is scored").
        self._coalescer: Coalescer[Array] | None = (
            Coalescer(self._probabilities, config.batch_size, "railguard-classifier")
            if config.coalesce and config.precision == "fp32"
            else None
        )

    @classmethod
    def open(cls, config: ClassifiersConfig | None = None) -> SafetyClassifier:
        """Open the built encoder(s) and the trained heads. Nothing is built here: a missing file is a
        ``FileNotFoundError`` naming the command that makes it."""
        config = config or ClassifiersConfig()
        artifacts, encoder, heads = _open_model(config)
        fused = None
        if config.fuse is not None:
            calibration = fused_calibration(config)
            fused = Fused(*_open_model(config.fused_member()), calibration=calibration)
        early = EarlyExit.load(config, artifacts, heads, encoder.pad_id) if config.uses_early_exit else None
        return cls(config, artifacts, encoder, heads, fused, early)

    @classmethod
    def load(cls, config: ClassifiersConfig | None = None) -> SafetyClassifier:
        """:meth:`open`, once :func:`classifiers.export.ensure_built` has built what is missing (the
        first use only: ~10-60 s, needs torch; the gateway's first start)."""
        from classifiers.export import ensure_built

        config = config or ClassifiersConfig()
        ensure_built(config)
        return cls.open(config)

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @property
    def heads(self) -> Heads:
        return self._heads

    @property
    def early_exit(self) -> EarlyExit | None:
        return self._early

    def _probabilities(self, texts: list[str]) -> list[Array]:
        if self._early is not None:
            windows, owners = self._encoder.windows(texts)
            probs, _ = self._early.probabilities(windows, owners, len(texts), self._heads)
            return list(probs[:, self._columns])
        probs = _model_probabilities(self._encoder, self._heads, texts)
        if (other := self._fused) is not None:

            def second(read: Mask) -> Array:
                chosen = [text for text, r in zip(texts, read, strict=True) if r]
                return _model_probabilities(other.encoder, other.heads, chosen)

            probs, _ = fuse(probs, second, self._cascade)
        return list(probs[:, self._columns])

    def probabilities(self, texts: Sequence[str]) -> Array:
        """Learned-head probabilities ``[len(texts), len(heads)]`` (batched, no PII or language)."""
        if not texts:
            return np.zeros((0, len(self._names)), dtype=np.float32)
        rows = self._coalescer(texts) if self._coalescer else self._probabilities(list(texts))
        return np.stack(rows)

    def score(self, texts: Sequence[str], language: str | None = None) -> list[TextScores]:
        """Scores for each text. Thread-safe; blocks (call it off the event loop). ``language``: the
        texts' language when the caller knows it (the gateway: the request's), else detected.

        A text is judged by what a reader understands from it (:func:`classifiers.canonical.views`):
        its canonical form, with invisible characters, look-alike letters, leetspeak and the like
        undone, and its encoded payloads decoded; each category scores its highest over those
        readings. PII spans and the language are those of the text as written."""
        readings, owners = self._readings(texts)
        probs = max_by_owner(self.probabilities(readings), owners, len(texts))
        results = []
        for text, row in zip(texts, probs, strict=True):
            scores: dict[str, float] = {n: float(v) for n, v in zip(self._names, row, strict=True)}
            spans: tuple[PiiSpan, ...] = ()
            if self.config.pii:
                spans = find_pii(text)
                scores[PII] = max((s.score for s in spans), default=0.0)
            if language is not None:
                lang = language
            elif self.config.language:
                lang = langid.detect(text, self.config.default_language)
            else:
                lang = self.config.default_language
            results.append(TextScores(MappingProxyType(scores), lang, spans, self.thresholds))
        return results

    def _readings(self, texts: Sequence[str]) -> tuple[list[str], list[int]]:
        """Each text's readings, and for each reading the index of its text; a reading the encoder
        would tokenize as another of the same text's (a difference its own normalisation undoes) is
        scored once."""
        readings: list[str] = []
        owners: list[int] = []
        for i, text in enumerate(texts):
            seen: set[str] = set()
            for reading in views(text):
                prepared = self._encoder.prepare(reading)
                if prepared not in seen:
                    seen.add(prepared)
                    readings.append(reading)
                    owners.append(i)
        return readings, owners

    def close(self) -> None:
        if self._coalescer is not None:
            self._coalescer.close()

    def __enter__(self) -> SafetyClassifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
