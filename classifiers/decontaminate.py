"""Training texts that repeat an evaluation text, found by word overlap, so they can be left out.

Some training sets share their origin with evaluation sets: MultiJail and Aegis both sampled
Anthropic's red-team prompts, which hh-rlhf's ``harmless-base`` also holds. A training text whose
word set is at least ``threshold`` (Jaccard) like an evaluation text's is a near-duplicate: the same
prompt, reworded or re-punctuated. ``railguard classifiers decontaminate`` marks such rows in the
labels files; ``train`` never reads an evaluation set itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["DEFAULT_THRESHOLD", "find_overlaps", "words"]

DEFAULT_THRESHOLD = 0.6  # "how to open the lock of a bike" ~ "how to open lock of bike" (0.83)

_WORD = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def find_overlaps(
    texts: Sequence[str],
    references: Mapping[str, Iterable[str]],
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[int, str]:
    """Index of each text in ``texts`` that near-duplicates a reference -> that reference set's name."""
    by_size: dict[int, list[tuple[frozenset[str], str]]] = {}
    for name, reference in references.items():
        for text in reference:
            ref = words(text)
            if ref:
                by_size.setdefault(len(ref), []).append((ref, name))
    found: dict[int, str] = {}
    for i, text in enumerate(texts):
        mine = words(text)
        if not mine:
            continue
        # Jaccard >= t needs t*|a| <= |b| <= |a|/t: only those sizes can match.
        low, high = int(threshold * len(mine)), int(len(mine) / threshold) + 1
        for size in range(max(low, 1), high + 1):
            match = next(
                (name for ref, name in by_size.get(size, ()) if _jaccard(mine, ref) >= threshold), None
            )
            if match is not None:
                found[i] = match
                break
    return found


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)
