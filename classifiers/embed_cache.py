"""A disk cache of window embeddings for training and evaluation (never used when serving).

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

from classifiers.runtime import Array

__all__ = ["EmbeddingCache", "WindowEncoder"]


class WindowEncoder(Protocol):
    """What the cache needs of an encoder: the ONNX ``Encoder``, or ``probe.HiddenStateEncoder``."""

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
