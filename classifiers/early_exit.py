"""Early exit: heads read after an encoder's middle block, the last blocks only where they are unsure.

e5-small has 12 blocks. Heads trained on the mean-pooled output of its 6th block ("exit heads",
``exit6/`` beside the full heads) already decide most texts as well as the full encoder does: the
output of block 6 is as good a feature as block 12 for clear-cut texts, and it costs half. The
encoder is exported in two parts, ``first`` (blocks 1-6: ``(input_ids, attention_mask) ->
(embedding, hidden)``) and ``rest`` (blocks 7-12: ``(hidden, attention_mask) -> embedding``), whose
composition is the full encoder. Every text runs ``first``; only those whose exit-head scores are
within a margin of one of their thresholds also run ``rest`` (on the hidden states ``first`` left,
so no block runs twice), and there the two heads' probabilities are averaged: the same cascade as
the fusion with a second encoder (:mod:`classifiers.cascade`), with the exit heads as the first model
and the full heads as the second. ``railguard classifiers train-exit`` trains the exit heads and
calibrates the mean and the margin on the validation split (docs/classifiers.md, "Eighth round").

The torch parts (:func:`split_module`, :func:`export_parts`) are for the build only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from classifiers.batching import by_length, padded
from classifiers.cascade import Cascade, fuse
from classifiers.heads import Calibration, Heads

if TYPE_CHECKING:
    from classifiers.build import BuiltArtifacts
    from classifiers.config import ClassifiersConfig
    from classifiers.runtime import TextWindows

__all__ = [
    "EarlyExit",
    "ExitEncoder",
    "ExitHeads",
    "ExitWindows",
    "exit_name",
    "export_parts",
    "heads_digest",
    "split_module",
]

Array = npt.NDArray[np.float32]


def split_module(module: Any, layer: int) -> tuple[Any, Any]:
    """``module`` (``classifiers.encoder.load_torch``'s mean-pooled BERT, smoothed or not) as two
    modules sharing its weights: blocks ``1..layer`` returning ``(embedding, hidden)``, and the
    blocks after it returning the full encoder's embedding from that hidden state."""
    import torch

    bert = module.model
    blocks = list(bert.encoder.layer)
    if not 0 < layer < len(blocks):
        raise ValueError(f"exit layer {layer} must be inside the encoder's {len(blocks)} blocks")

    def run(layers: Any, hidden: Any, mask: Any) -> Any:
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for block in layers:
            out = block(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def pool(hidden: Any, mask: Any) -> Any:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    class First(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = bert.embeddings
            self.blocks = torch.nn.ModuleList(blocks[:layer])

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
            hidden = run(self.blocks, hidden, attention_mask)
            return pool(hidden, attention_mask), hidden

    class Rest(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(blocks[layer:])

        def forward(self, hidden: Any, attention_mask: Any) -> Any:
            return pool(run(self.blocks, hidden, attention_mask), attention_mask)

    return First().eval(), Rest().eval()


def export_parts(module: Any, layer: int, first: Path, rest: Path) -> None:
    """Both parts of ``module`` to ONNX (batch and sequence axes dynamic)."""
    import torch

    from classifiers.encoder import export_graph

    head, tail = split_module(module, layer)
    ids = torch.tensor([[5, 17, 23, 6], [5, 17, 6, 1]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.int64)
    export_graph(
        head,
        (ids, mask),
        first,
        inputs={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
        outputs={"embedding": {0: "batch"}, "hidden": {0: "batch", 1: "sequence"}},
    )
    with torch.no_grad():
        _, hidden = head(ids, mask)
    export_graph(
        tail,
        (hidden, mask),
        rest,
        inputs={"hidden": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
        outputs={"embedding": {0: "batch"}},
    )


class ExitEncoder:
    """The two ONNX parts of an encoder split at its exit block. Windows of similar length run
    together, ``batch_size`` at a time (int8 passes 1: each window alone, so that no window's scores
    depend on its batch)."""

    def __init__(self, first: Path, rest: Path, *, threads: int, batch_size: int, pad_id: int):
        from classifiers.build import open_session

        self._first = open_session(first, threads)
        self._rest = open_session(rest, threads)
        self._batch_size = batch_size
        self._pad = pad_id

    def first(self, windows: Sequence[Sequence[int]]) -> tuple[Array, list[Array]]:
        """The exit embedding of each window ``[n, dim]``, and each window's hidden state
        ``[len(window), dim]`` for :meth:`rest`."""
        embeddings: list[Array | None] = [None] * len(windows)
        hidden: list[Array | None] = [None] * len(windows)
        for idx in by_length([len(w) for w in windows], self._batch_size):
            ids, mask = padded(windows, idx, self._pad)
            emb, states = self._first.run(None, {"input_ids": ids, "attention_mask": mask})
            for row, k in enumerate(idx):
                embeddings[k] = emb[row]
                hidden[k] = states[row, : len(windows[k])]
        return _stack(embeddings), [h for h in hidden if h is not None]

    def rest(self, hidden: Sequence[Array]) -> Array:
        """The full encoder's embedding of each window, from its hidden state after the exit block."""
        out: list[Array | None] = [None] * len(hidden)
        for idx in by_length([len(h) for h in hidden], self._batch_size):
            width = max(len(hidden[k]) for k in idx)
            states = np.zeros((len(idx), width, hidden[idx[0]].shape[1]), dtype=np.float32)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, k in enumerate(idx):
                states[row, : len(hidden[k])] = hidden[k]
                mask[row, : len(hidden[k])] = 1
            (emb,) = self._rest.run(None, {"hidden": states, "attention_mask": mask})
            for row, k in enumerate(idx):
                out[k] = emb[row]
        return _stack(out)


def _stack(rows: Sequence[Array | None]) -> Array:
    present = [r for r in rows if r is not None]
    if len(present) != len(rows):  # pragma: no cover - every index is in exactly one batch
        raise RuntimeError("a window was not embedded")
    return np.stack(present).astype(np.float32, copy=False) if present else np.zeros((0, 0), np.float32)


class ExitWindows:
    """An encoder's windows embedded at its exit block, for the embedding cache (training, eval)."""

    def __init__(self, windows: TextWindows, encoder: ExitEncoder):
        self._windows = windows
        self._encoder = encoder

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        return self._windows.windows(texts)

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]:
        return self._windows.first_windows(texts)

    def embed_windows(self, windows: Sequence[Sequence[int]]) -> Array:
        return self._encoder.first(windows)[0]


def exit_name(artifacts: BuiltArtifacts) -> str:
    """What the exit's calibrations record as their encoder: the built encoder's key and the block."""
    return f"{artifacts.directory.name}+exit{artifacts.exit_layer}"


def heads_digest(path: Path) -> str:
    """Names the full heads whose probabilities the exit's mean was calibrated with."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ExitHeads:
    """The trained parts of an early exit: the exit heads, the thresholds of the mean, the cascade."""

    heads: Heads
    calibration: Calibration  # the mean's thresholds (and the margin), what judges every text
    cascade: Cascade
    files: tuple[Path, ...]  # what was trained and calibrated: for the classifier's version

    @classmethod
    def load(cls, config: ClassifiersConfig, artifacts: BuiltArtifacts, full: Heads) -> ExitHeads:
        """Refuses thresholds calibrated for another build of the encoder or other full heads."""
        exit_dir, fused_path = config.exit_dir, config.exit_calibration
        if exit_dir is None or fused_path is None or artifacts.exit_layer is None:
            raise ValueError(f"encoder {config.encoder!r} has no early exit configured")
        files = (exit_dir / "heads.npz", exit_dir / "calibration.json", fused_path)
        if missing := [str(f) for f in files if not f.is_file()]:
            raise FileNotFoundError(
                f"no exit heads for {config.encoder} ({', '.join(missing)} missing): train them "
                f"(`railguard classifiers train-exit`) or set early_exit: false"
            )
        heads = Heads.load(files[0])
        own, fused = Calibration.load(files[1]), Calibration.load(files[2])
        expected = exit_name(artifacts)
        for calibration, path in ((own, files[1]), (fused, files[2])):
            if calibration.encoder != expected:
                raise ValueError(
                    f"{path} was calibrated for {calibration.encoder}, not {expected}: retrain the "
                    f"exit heads (railguard classifiers train-exit)"
                )
        if fused.info.get("full_heads") != heads_digest(artifacts.heads):
            raise ValueError(
                f"{fused_path} was calibrated with other full heads than {artifacts.heads}: "
                f"recalibrate it (railguard classifiers train-exit --keep-heads)"
            )
        if heads.names != full.names:
            raise ValueError(f"exit heads {heads.names} differ from {full.names}")
        cascade = Cascade.calibrated(heads.names, own, fused, source=fused_path, fuse="exit")
        return cls(heads, fused, cascade, files)


@dataclass(frozen=True, slots=True)
class EarlyExit:
    """The two encoder parts and the exit's trained parts: what scores texts through the exit."""

    encoder: ExitEncoder
    trained: ExitHeads

    @classmethod
    def load(
        cls, config: ClassifiersConfig, artifacts: BuiltArtifacts, full: Heads, pad_id: int
    ) -> EarlyExit:
        trained = ExitHeads.load(config, artifacts, full)
        encoder = ExitEncoder(
            artifacts.exit_part("first", config.precision),
            artifacts.exit_part("rest", config.precision),
            threads=config.threads,
            batch_size=1 if config.precision == "int8" else config.batch_size,
            pad_id=pad_id,
        )
        return cls(encoder, trained)

    def probabilities(
        self, windows: Sequence[Sequence[int]], owners: Sequence[int], n: int, full: Heads
    ) -> tuple[Array, npt.NDArray[np.bool_]]:
        """Per text (``n`` of them; ``owners``: each window's text) the probabilities on the mean's
        scale, and which texts ran the blocks after the exit."""
        from classifiers.runtime import max_by_owner

        embeddings, hidden = self.encoder.first(windows)
        first = max_by_owner(self.trained.heads(embeddings), owners, n)

        def rest(escalated: npt.NDArray[np.bool_]) -> Array:
            rank = np.cumsum(escalated) - 1  # a text's row among the escalated ones
            chosen = [w for w, owner in enumerate(owners) if escalated[owner]]
            if not chosen:
                return np.zeros((0, len(full.names)), dtype=np.float32)
            emb = self.encoder.rest([hidden[w] for w in chosen])
            return max_by_owner(full(emb), [int(rank[owners[w]]) for w in chosen], int(escalated.sum()))

        return fuse(first, rest, self.trained.cascade)
