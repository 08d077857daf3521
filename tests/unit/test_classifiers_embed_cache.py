"""The embedding cache: keyed by token windows, saved as it goes, shared safely between processes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifiers.evaluation.embeddings import EmbeddingCache


class CountingEncoder:
    """A deterministic stand-in encoder (the cache's logic is under test, not an encoder):
    one token per character, the embedding is [sum of ids, window length]."""

    def __init__(self) -> None:
        self.embedded = 0

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        return [[ord(c) for c in t] for t in texts], list(range(len(texts)))

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]:
        return self.windows(texts)[0]

    def embed_windows(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        self.embedded += len(windows)
        return np.array([[sum(w), len(w)] for w in windows], dtype=np.float32)


def test_vectors_are_reused_and_survive_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "enc.npz"
    encoder = CountingEncoder()
    cache = EmbeddingCache(path, encoder)
    first = cache.first_windows(["ab", "c"])
    np.testing.assert_array_equal(first, [[195, 2], [99, 1]])
    cache.first_windows(["c", "ab"])
    assert encoder.embedded == 2  # the second call embedded nothing
    again = CountingEncoder()
    np.testing.assert_array_equal(EmbeddingCache(path, again).first_windows(["c"]), [[99, 1]])
    assert again.embedded == 0


def test_two_caches_on_one_file_keep_each_others_vectors(tmp_path: Path) -> None:
    """Two runs (e.g. a training and an evaluation) loaded the same file, then each added different
    windows: the later save must not drop the earlier one's work."""
    path = tmp_path / "enc.npz"
    EmbeddingCache(path, CountingEncoder()).first_windows(["shared"])
    one, two = EmbeddingCache(path, CountingEncoder()), EmbeddingCache(path, CountingEncoder())
    one.first_windows(["only in one"])
    two.first_windows(["only in two"])
    reader = CountingEncoder()
    EmbeddingCache(path, reader).first_windows(["shared", "only in one", "only in two"])
    assert reader.embedded == 0
    assert not list(tmp_path.glob("*.tmp.npz"))  # no temporary file left behind
