"""``SafetyClassifier``: text -> per-category scores, language and PII spans, on ONNX Runtime.

The encoder runs in ONNX Runtime (int8 by default), the heads in numpy. ``score`` is thread-safe and
meant for worker threads; with ``coalesce`` on, concurrent calls share ONNX batches.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from classifiers import language as langid
from classifiers.batching import Coalescer, by_length, padded
from classifiers.build import BuiltArtifacts, artifact_paths, build, open_session
from classifiers.canonical import views
from classifiers.cascade import Cascade, Mask, fuse
from classifiers.config import ClassifiersConfig
from classifiers.early_exit import EarlyExit
from classifiers.heads import Calibration, Heads
from classifiers.pii import PiiSpan, find_pii
from classifiers.taxonomy import PII, to_llama_guard, to_openai

__all__ = [
    "Encoder",
    "Fused",
    "SafetyClassifier",
    "TextScores",
    "TextWindows",
    "first_of",
    "fusion_name",
    "max_by_owner",
    "split_windows",
]

Array = npt.NDArray[np.float32]
_CHARS_PER_TOKEN = 8  # generous: only bounds how much text is tokenized
_SPACES = re.compile(" {2,}")


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


class TextWindows:
    """The built encoder's tokenizer (``tokenizer.json`` + ``encoder.json``): texts -> windows of token
    ids, each at most ``max_tokens`` long with the encoder's special tokens, at most ``max_windows``."""

    def __init__(self, directory: Path, max_tokens: int, max_windows: int):
        from tokenizers import Tokenizer

        meta = json.loads((directory / "encoder.json").read_text(encoding="utf-8"))
        self.name: str = meta["name"]
        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._bos, self._pad = int(meta["bos"]), int(meta["pad"])
        self._eos: int | None = None if meta.get("eos") is None else int(meta["eos"])  # None: a causal LM
        # "query: " + text tokenizes as "▁query", ":" then the text's own "▁..." pieces
        prefix = str(meta.get("prefix", "")).strip()
        self._prefix_ids: list[int] = (
            self._tokenizer.encode(prefix, add_special_tokens=False).ids if prefix else []
        )
        self._table = str.maketrans(meta["normalize"]) if meta.get("normalize") else None
        self._collapse = bool(meta.get("collapse_spaces", False))
        self._max_tokens = max_tokens
        self._max_windows = max_windows

    @property
    def pad_id(self) -> int:
        return self._pad

    def prepare(self, text: str) -> str:
        """``text`` as the tokenizer reads it (the encoder's own character normalisation)."""
        if self._table is not None:
            text = text.translate(self._table)
        if self._collapse:
            text = _SPACES.sub(" ", text)
        return text

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """Token-id windows for each text, and for each window the index of its text."""
        limit = self._max_tokens * self._max_windows * _CHARS_PER_TOKEN
        clipped = [t if len(t) <= limit else t[: limit // 2] + " " + t[-limit // 2 :] for t in texts]
        encodings = self._tokenizer.encode_batch([self.prepare(t) for t in clipped], add_special_tokens=False)
        head = [self._bos, *self._prefix_ids]
        tail = [] if self._eos is None else [self._eos]
        return split_windows(
            [enc.ids for enc in encodings],
            self._max_tokens - len(head) - len(tail),
            self._max_windows,
            head=head,
            tail=tail,
        )

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's first window (what training sees)."""
        return first_of(*self.windows(texts), len(texts))


class Encoder(TextWindows):
    """Tokenizer + ONNX encoder: texts -> windows of token ids -> L2-normalized embeddings."""

    def __init__(self, artifacts: BuiltArtifacts, config: ClassifiersConfig, *, lazy: bool = False):
        """The built encoder at ``config.precision``, with ``config``'s windows, threads and batch size
        (``lazy``: its ONNX session loaded on first use, not now)."""
        super().__init__(artifacts.directory, config.max_tokens, config.max_windows)
        self._path = artifacts.onnx(config.precision)
        self._threads = config.threads
        # Behind an early exit (classifiers/early_exit.py) the whole encoder only tokenizes: its
        # session is loaded lazily there, not to hold ~120 MB for nothing.
        self._session: Any = None
        self._lock = threading.Lock()
        if not lazy:
            self._loaded()
        # Dynamic int8 scales each MatMul input by the whole tensor's range, so a window's embedding
        # would depend on the windows batched with it: int8 runs each window alone (batching gains
        # int8 little on CPU), fp32 batches windows of similar length.
        self._batch_size = 1 if config.precision == "int8" else config.batch_size

    @property
    def loaded(self) -> bool:
        """Whether the ONNX session is loaded (not yet, behind an early exit, until first used)."""
        return self._session is not None

    def _loaded(self) -> Any:
        if (session := self._session) is not None:  # the request path: no lock once loaded
            return session
        with self._lock:
            if self._session is None:
                self._session = open_session(self._path, self._threads)
            return self._session

    def embed_windows(self, windows: Sequence[Sequence[int]]) -> Array:
        """Embeddings ``[len(windows), dim]``; windows of similar length are batched together (int8:
        one at a time)."""
        out: Array | None = None
        for idx in by_length([len(w) for w in windows], self._batch_size):
            ids, mask = padded(windows, idx, self._pad)
            (emb,) = self._loaded().run(None, {"input_ids": ids, "attention_mask": mask})
            if out is None:
                out = np.empty((len(windows), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def embed(self, texts: Sequence[str]) -> tuple[Array, list[int]]:
        windows, owners = self.windows(texts)
        return self.embed_windows(windows), owners


def split_windows(
    token_ids: Sequence[Sequence[int]],
    width: int,
    max_windows: int,
    *,
    head: Sequence[int],
    tail: Sequence[int] = (),
) -> tuple[list[list[int]], list[int]]:
    """Each text's tokens cut into chunks of ``width`` (past ``max_windows``: the first ones and the
    last), each wrapped as ``head + chunk + tail``; and for each window the index of its text."""
    windows: list[list[int]] = []
    owners: list[int] = []
    for i, ids in enumerate(token_ids):
        chunks = [ids[j : j + width] for j in range(0, max(len(ids), 1), width)]
        if len(chunks) > max_windows:
            chunks = [*chunks[: max_windows - 1], ids[-width:]]
        for chunk in chunks:
            windows.append([*head, *chunk, *tail])
            owners.append(i)
    return windows, owners


def first_of(windows: Sequence[list[int]], owners: Sequence[int], n: int) -> list[list[int]]:
    """Each of the ``n`` texts' first window."""
    first: dict[int, list[int]] = {}
    for window, owner in zip(windows, owners, strict=True):
        first.setdefault(owner, window)
    return [first[i] for i in range(n)]


def max_by_owner(probs: Array, owners: Sequence[int], n: int) -> Array:
    """Per text, the elementwise max over its windows."""
    out = np.zeros((n, probs.shape[1]), dtype=np.float32)
    np.maximum.at(out, np.asarray(owners, dtype=np.int64), probs)
    return out


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


def _load_model(config: ClassifiersConfig) -> tuple[BuiltArtifacts, Encoder, Heads]:
    paths = artifact_paths(config)
    missing = [p for p in (paths.heads, paths.calibration) if not p.is_file()]
    if missing:  # before building: an encoder nobody trained heads for would build for nothing
        raise FileNotFoundError(
            f"no trained heads for encoder {config.encoder!r} ({', '.join(map(str, missing))} missing): "
            f"train them (`railguard classifiers train --encoder {config.encoder}`) or set artifacts_dir"
        )
    artifacts = build(config)
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
        # texts/s of the coalesced queue, docs/classifiers.md "Sixth round").
        self._coalescer: Coalescer[Array] | None = (
            Coalescer(self._probabilities, config.batch_size, "railguard-classifier")
            if config.coalesce and config.precision == "fp32"
            else None
        )

    @classmethod
    def load(cls, config: ClassifiersConfig | None = None) -> SafetyClassifier:
        """Build what is missing (first use only: ~10-20 s, needs torch), then load the ONNX encoder(s)."""
        config = config or ClassifiersConfig()
        artifacts, encoder, heads = _load_model(config)
        fused = None
        if config.fuse is not None:
            calibration = config.fused_calibration
            if calibration is None or not calibration.is_file():
                raise FileNotFoundError(
                    f"no thresholds for the fusion with {config.fuse.encoder} ({calibration} missing): "
                    f"calibrate them (`railguard classifiers calibrate-fusion --encoder {config.encoder} "
                    f"--fuse {config.fuse.encoder}`)"
                )
            fused = Fused(*_load_model(config.fused_member()), calibration=calibration)
        early = EarlyExit.load(config, artifacts, heads, encoder.pad_id) if config.uses_early_exit else None
        return cls(config, artifacts, encoder, heads, fused, early)

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
