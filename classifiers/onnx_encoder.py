"""The built encoder on ONNX Runtime: ``Encoder`` turns texts into windows and windows into
L2-normalized embeddings; ``open_session`` opens any built ONNX file (the exit parts' too)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.batching import by_length, padded
from classifiers.built import BuiltArtifacts
from classifiers.config import ClassifiersConfig
from classifiers.windows import Array, TextWindows

__all__ = ["Encoder", "open_session"]


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


def open_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session on the CPU for a built model, ``threads`` intra-op threads."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
