"""A disk cache of window embeddings for training and evaluation (never used when serving), and the
caches of a built encoder: whole (:func:`embedding_cache`) or at one of its early exits
(:func:`exit_embedding_cache`).

Keyed by the window's token ids, so the first-window embeddings training uses are reused by the
all-window scoring evaluation does. One ``.npz`` per encoder and precision; processes that share one
merge their additions when they save.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from classifiers.built import BuiltArtifacts
from classifiers.config import ClassifiersConfig
from classifiers.early_exit import ExitEncoder
from classifiers.export import build
from classifiers.onnx_encoder import Encoder
from classifiers.windows import Array, TextWindows

__all__ = ["EmbeddingCache", "ExitWindows", "WindowEncoder", "embedding_cache", "exit_embedding_cache"]


class WindowEncoder(Protocol):
    """What the cache needs of an encoder: the ONNX ``Encoder``, an encoder's exit (``ExitWindows``),
    or a torch model's hidden states (``bench/probe_layers.py``)."""

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]: ...

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]: ...

    def embed_windows(self, windows: Sequence[Sequence[int]]) -> Array: ...


def _key(window: Sequence[int]) -> bytes:
    return hashlib.blake2b(np.asarray(window, dtype=np.int32).tobytes(), digest_size=16).digest()


class EmbeddingCache:
    def __init__(self, path: Path, encoder: WindowEncoder):
        self._path = path
        self._encoder = encoder
        self._vectors: dict[bytes, Array] = {}
        self._dirty = False
        self._seen_mtime = self._merge_from_disk()

    def _merge_from_disk(self) -> int | None:
        """Adds what the file holds and this cache lacks; returns the file's mtime (None: no file)."""
        try:
            mtime = self._path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with np.load(self._path) as data:
            keys = data["keys"].view(np.uint8).reshape(-1, 16)
            for k, v in zip(keys, data["vecs"], strict=True):
                self._vectors.setdefault(k.tobytes(), v)
        return mtime

    def _embed(self, windows: Sequence[Sequence[int]]) -> Array:
        keys = [_key(w) for w in windows]
        missing = {k: w for k, w in zip(keys, windows, strict=True) if k not in self._vectors}
        todo = list(missing)
        for start in range(0, len(todo), 2048):  # save as it goes: embedding 10k texts takes minutes
            chunk = todo[start : start + 2048]
            vecs = self._encoder.embed_windows([missing[k] for k in chunk])
            self._vectors.update(zip(chunk, vecs, strict=True))
            self._dirty = True
            self.save()
        return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def first_windows(self, texts: Sequence[str]) -> Array:
        """The embedding of each text's first window (what training sees)."""
        return self._embed(self._encoder.first_windows(texts))

    def all_windows(self, texts: Sequence[str]) -> tuple[Array, list[int]]:
        """Every window's embedding and its text index (what serving scores)."""
        windows, owners = self._encoder.windows(texts)
        return self._embed(windows), owners

    def save(self) -> None:
        """Writes every vector, merged with what other processes wrote since (under a file lock),
        so that two training or evaluation runs sharing a cache never drop each other's work."""
        if not self._dirty:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._path.with_name(self._path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self._path.stat().st_mtime_ns if self._path.exists() else None
                if current is not None and current != self._seen_mtime:
                    self._merge_from_disk()
                keys = np.frombuffer(b"".join(self._vectors), dtype=np.uint8).reshape(-1, 16)
                vecs = np.stack(list(self._vectors.values()))
                tmp = self._path.with_name(self._path.stem + f".{os.getpid()}.tmp.npz")
                np.savez(tmp, keys=keys, vecs=vecs)
                tmp.replace(self._path)
                self._seen_mtime = self._path.stat().st_mtime_ns
                self._dirty = False
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class ExitWindows:
    """An encoder's windows embedded at one of its exits, for the embedding cache (training, eval)."""

    def __init__(self, windows: TextWindows, encoder: ExitEncoder, depth: int):
        self._windows = windows
        self._encoder = encoder
        self._depth = depth

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        return self._windows.windows(texts)

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]:
        return self._windows.first_windows(texts)

    def embed_windows(self, windows: Sequence[Sequence[int]]) -> Array:
        return self._encoder.embed(windows, self._depth)


def embedding_cache(config: ClassifiersConfig, artifacts: BuiltArtifacts) -> EmbeddingCache:
    """Window embeddings from the built encoder at ``config.precision``, cached on disk."""
    encoder = Encoder(artifacts, config)
    name = f"{artifacts.directory.name}.{artifacts.variant(config.precision)}.{config.max_tokens}.npz"
    return EmbeddingCache(config.cache_dir / "embeddings" / name, encoder)


def exit_embedding_cache(config: ClassifiersConfig, artifacts: BuiltArtifacts, layer: int) -> EmbeddingCache:
    """Window embeddings at the encoder's exit after block ``layer``, cached like
    :func:`embedding_cache`'s (the parts at ``config.precision`` are built first if need be). The
    name carries every exit: the parts between them are what computes the embeddings."""
    if artifacts.exit_precision != config.precision:
        artifacts = build(config)
    windows = TextWindows(artifacts.directory, config.max_tokens, config.max_windows)
    precision = config.precision
    encoder = ExitEncoder(
        artifacts.exit_parts_at(precision),
        threads=config.threads,
        batch_size=1 if precision == "int8" else config.batch_size,
        pad_id=windows.pad_id,
    )
    layers = artifacts.exit_layers
    parts = "-".join(map(str, layers))
    name = f"{artifacts.directory.name}.exit{layer}-of-{parts}-{artifacts.variant(precision)}"
    return EmbeddingCache(
        config.cache_dir / "embeddings" / f"{name}.{config.max_tokens}.npz",
        ExitWindows(windows, encoder, layers.index(layer)),
    )
