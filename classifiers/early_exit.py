"""Early exits: heads read after an encoder's middle blocks, the later blocks only where they are unsure.

e5-small has 12 blocks. Heads trained on the mean-pooled output of an earlier block ("exit heads",
``exit<N>/`` beside the full heads) already decide most texts as well as the full encoder does: for
clear-cut texts the output of a middle block is as good a feature as block 12's, and it costs a
fraction. The encoder is exported in parts split at its exits (e5-small: blocks 1-3, 4-6 and 7-12;
``(input_ids, attention_mask) -> (embedding, hidden)``, then ``(hidden, attention_mask) ->
(embedding, hidden)``, the last part ``-> embedding``), whose composition is the full encoder. Every
text runs the first part and the first exit's heads; only those whose scores there are within a
margin of one of that exit's thresholds run the next part (from the hidden states the part before
left, so no block runs twice), and so on. The deepest exit's heads and the full heads are averaged
where the full encoder ran: the same cascade as the fusion with a second encoder
(:mod:`classifiers.cascade`), with the exit heads as the first model and the full heads as the
second; each earlier exit is a cascade in front of that one (``average=False``: the texts it
escalates take what the later stages give). ``railguard classifiers train-exit`` trains every exit's
heads and calibrates the mean and the margins on the validation split (docs/classifiers.md, "Why
this design").

The encoder's parts are built by :mod:`classifiers.export.exit_parts`; this module only runs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from classifiers.batching import by_length, padded
from classifiers.built import BuiltArtifacts
from classifiers.cascade import Cascade, fuse
from classifiers.config import ClassifiersConfig
from classifiers.heads import Calibration, Heads
from classifiers.onnx_encoder import open_session
from classifiers.windows import max_by_owner

__all__ = [
    "EarlyExit",
    "ExitEncoder",
    "ExitHeads",
    "ExitStage",
    "exit_name",
    "files_digest",
    "heads_digest",
]

Array = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


class ExitEncoder:
    """The ONNX parts of an encoder split at its exits (:func:`classifiers.built.part_names`).
    Windows of similar length run together, ``batch_size`` at a time (int8 passes 1: each window
    alone, so that no window's scores depend on its batch)."""

    def __init__(self, parts: Sequence[Path], *, threads: int, batch_size: int, pad_id: int):
        if len(parts) < 2:
            raise ValueError("an encoder split at its exits has at least two parts")
        self._parts = [open_session(p, threads) for p in parts]
        self._batch_size = batch_size
        self._pad = pad_id

    @property
    def exits(self) -> int:
        """How many exits: one fewer than the parts."""
        return len(self._parts) - 1

    def first(self, windows: Sequence[Sequence[int]]) -> tuple[Array, list[Array]]:
        """The first exit's embedding of each window ``[n, dim]``, and each window's hidden state
        ``[len(window), dim]`` for :meth:`next`."""
        embeddings: list[Array | None] = [None] * len(windows)
        hidden: list[Array | None] = [None] * len(windows)
        for idx in by_length([len(w) for w in windows], self._batch_size):
            ids, mask = padded(windows, idx, self._pad)
            emb, states = self._parts[0].run(None, {"input_ids": ids, "attention_mask": mask})
            for row, k in enumerate(idx):
                embeddings[k] = emb[row]
                hidden[k] = states[row, : len(windows[k])]
        return _stack(embeddings), [h for h in hidden if h is not None]

    def next(self, part: int, hidden: Sequence[Array]) -> tuple[Array, list[Array] | None]:
        """Part ``part`` (1 up to :attr:`exits`) on the hidden states the part before it left: the
        embedding at its end (after the last part: the full encoder's), and the hidden states for the
        part after it (``None`` after the last)."""
        session, last = self._parts[part], part == len(self._parts) - 1
        out: list[Array | None] = [None] * len(hidden)
        states_out: list[Array | None] = [None] * len(hidden)
        for idx in by_length([len(h) for h in hidden], self._batch_size):
            width = max(len(hidden[k]) for k in idx)
            states = np.zeros((len(idx), width, hidden[idx[0]].shape[1]), dtype=np.float32)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, k in enumerate(idx):
                states[row, : len(hidden[k])] = hidden[k]
                mask[row, : len(hidden[k])] = 1
            outputs = session.run(None, {"hidden": states, "attention_mask": mask})
            for row, k in enumerate(idx):
                out[k] = outputs[0][row]
                if not last:
                    states_out[k] = outputs[1][row, : len(hidden[k])]
        return _stack(out), None if last else [h for h in states_out if h is not None]

    def embed(self, windows: Sequence[Sequence[int]], depth: int) -> Array:
        """Each window's embedding at exit ``depth`` (0: the first; :attr:`exits`: the full encoder)."""
        embeddings, first = self.first(windows)
        hidden: list[Array] | None = first
        for part in range(1, depth + 1):
            if hidden is None:  # pragma: no cover - depth is at most the number of exits
                break
            embeddings, hidden = self.next(part, hidden)
        return embeddings


def _stack(rows: Sequence[Array | None]) -> Array:
    present = [r for r in rows if r is not None]
    if len(present) != len(rows):  # pragma: no cover - every index is in exactly one batch
        raise RuntimeError("a window was not embedded")
    return np.stack(present).astype(np.float32, copy=False) if present else np.zeros((0, 0), np.float32)


def exit_name(artifacts: BuiltArtifacts, layer: int) -> str:
    """What an exit's calibrations record as their encoder: the built encoder's key and the block."""
    return f"{artifacts.directory.name}+exit{layer}"


def heads_digest(path: Path) -> str:
    """Names the full heads whose probabilities the deepest exit's mean was calibrated with."""
    return files_digest([path])


def files_digest(paths: Sequence[Path]) -> str:
    """Names trained parts (an exit's heads and thresholds) that a calibration was made with."""
    return hashlib.sha256(b"".join(p.read_bytes() for p in paths)).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ExitStage:
    """One exit's trained parts: its heads, the thresholds that judge what leaves the cascade from
    here (the deepest exit's mean's, for every exit), and its cascade to the stages after it."""

    layer: int
    heads: Heads
    calibration: Calibration
    cascade: Cascade
    files: tuple[Path, ...]  # heads.npz, calibration.json, calibration+exit<N>.json


@dataclass(frozen=True, slots=True)
class ExitHeads:
    """Every exit's trained parts, the shallowest first."""

    stages: tuple[ExitStage, ...]

    @property
    def calibration(self) -> Calibration:
        """The deepest exit's mean's thresholds: what judges every text."""
        return self.stages[-1].calibration

    @property
    def files(self) -> tuple[Path, ...]:
        """What was trained and calibrated: for the classifier's version."""
        return tuple(f for stage in self.stages for f in stage.files)

    @property
    def exits(self) -> str:
        """``+exit3+exit6``: the blocks the exits read, for the classifier's version."""
        return "".join(f"+exit{s.layer}" for s in self.stages)

    @property
    def margins(self) -> str:
        """``6,3``: each exit's cascade margin, the first exit's first."""
        return ",".join(f"{s.cascade.margin:g}" for s in self.stages)

    @classmethod
    def load(cls, config: ClassifiersConfig, artifacts: BuiltArtifacts, full: Heads) -> ExitHeads:
        """Refuses thresholds calibrated for another build of the encoder, other full heads, or
        other parts of the exits after them."""
        layers = artifacts.exit_layers
        if not layers:
            raise ValueError(f"encoder {config.encoder!r} has no early exit configured")
        stages: list[ExitStage] = []
        following: tuple[Path, ...] = ()
        for layer in reversed(layers):  # the deepest first: each earlier exit names the one after
            files = config.exit_files(layer)
            stage = _load_stage(layer, files, artifacts, full, following)
            stages.insert(0, stage)
            following = files
        return cls(tuple(stages))


def _load_stage(
    layer: int, files: tuple[Path, ...], artifacts: BuiltArtifacts, full: Heads, following: tuple[Path, ...]
) -> ExitStage:
    if missing := [str(f) for f in files if not f.is_file()]:
        raise FileNotFoundError(
            f"no exit heads for block {layer} ({', '.join(missing)} missing): train them "
            f"(`railguard classifiers train-exit`) or set early_exit: false"
        )
    heads = Heads.load(files[0])
    own, fused = Calibration.load(files[1]), Calibration.load(files[2])
    expected = exit_name(artifacts, layer)
    for calibration, path in ((own, files[1]), (fused, files[2])):
        if calibration.encoder != expected:
            raise ValueError(
                f"{path} was calibrated for {calibration.encoder}, not {expected}: retrain the "
                f"exit heads (railguard classifiers train-exit)"
            )
    if following:  # an earlier exit: calibrated in front of the exits after it as they are now
        if fused.info.get("next") != files_digest(following):
            raise ValueError(
                f"{files[2]} was calibrated in front of other exit heads than {following[0].parent}: "
                f"recalibrate it (railguard classifiers train-exit --keep-heads)"
            )
    elif fused.info.get("full_heads") != heads_digest(artifacts.heads):
        raise ValueError(
            f"{files[2]} was calibrated with other full heads than {artifacts.heads}: "
            f"recalibrate it (railguard classifiers train-exit --keep-heads)"
        )
    if heads.names != full.names:
        raise ValueError(f"exit heads {heads.names} differ from {full.names}")
    cascade = Cascade.calibrated(heads.names, own, fused, source=files[2], fuse="exit", average=not following)
    return ExitStage(layer, heads, fused, cascade, files)


@dataclass(frozen=True, slots=True)
class EarlyExit:
    """The encoder's parts and its exits' trained parts: what scores texts through the exits."""

    encoder: ExitEncoder
    trained: ExitHeads

    @classmethod
    def load(
        cls, config: ClassifiersConfig, artifacts: BuiltArtifacts, full: Heads, pad_id: int
    ) -> EarlyExit:
        trained = ExitHeads.load(config, artifacts, full)
        encoder = ExitEncoder(
            artifacts.exit_parts_at(config.precision),
            threads=config.threads,
            batch_size=1 if config.precision == "int8" else config.batch_size,
            pad_id=pad_id,
        )
        if encoder.exits != len(trained.stages):  # pragma: no cover - both follow the encoder's exits
            raise ValueError("the encoder's parts and its exit heads differ")
        return cls(encoder, trained)

    def probabilities(
        self, windows: Sequence[Sequence[int]], owners: Sequence[int], n: int, full: Heads
    ) -> tuple[Array, Mask]:
        """Per text (``n`` of them; ``owners``: each window's text) the probabilities on the deepest
        exit's mean's scale, and which texts ran past the first exit."""
        embeddings, hidden = self.encoder.first(windows)
        return self._stage(0, embeddings, hidden, list(owners), n, full)

    def _stage(
        self, k: int, embeddings: Array, hidden: list[Array], owners: list[int], n: int, full: Heads
    ) -> tuple[Array, Mask]:
        stage = self.trained.stages[k]
        probs = max_by_owner(stage.heads(embeddings), owners, n)

        def later(escalated: Mask) -> Array:
            rank = np.cumsum(escalated) - 1  # a text's row among the escalated ones
            chosen = [w for w, owner in enumerate(owners) if escalated[owner]]
            m = int(escalated.sum())
            if not chosen:
                return np.zeros((0, len(full.names)), dtype=np.float32)
            ranks = [int(rank[owners[w]]) for w in chosen]
            emb, states = self.encoder.next(k + 1, [hidden[w] for w in chosen])
            if states is None:  # past the deepest exit: the full encoder's embedding
                return max_by_owner(full(emb), ranks, m)
            return self._stage(k + 1, emb, states, ranks, m, full)[0]

        return fuse(probs, later, stage.cascade)
