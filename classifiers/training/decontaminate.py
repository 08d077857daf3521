"""Training texts that repeat an evaluation text, found by word overlap, so they can be left out.

Some training sets share their origin with evaluation sets: MultiJail and Aegis both sampled
Anthropic's red-team prompts, which hh-rlhf's ``harmless-base`` also holds. A training text whose
word set is at least ``threshold`` (Jaccard) like an evaluation text's is a near-duplicate: the same
prompt, reworded or re-punctuated. ``railguard classifiers decontaminate`` marks such rows in the
labels files; ``train`` never reads an evaluation set itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = ["DEFAULT_THRESHOLD", "find_overlaps", "mark_contrast", "mark_hh_rlhf", "words"]

DEFAULT_THRESHOLD = 0.6  # "how to open the lock of a bike" ~ "how to open lock of bike" (0.75)

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


def mark_hh_rlhf(labels_path: Path, data_dir: Path, threshold: float = DEFAULT_THRESHOLD) -> Counter[str]:
    """Rewrite the hh-rlhf labels file with every row near an evaluation text (and only those) marked
    excluded; returns how many rows each evaluation set excluded."""
    from classifiers.evaluation.evalsets import EVAL_SETS, OWN_SETS
    from classifiers.training.labels import (
        HH_RLHF_HEADER,
        hh_rlhf_prompts,
        labelled_texts,
        read_labels,
        with_exclusions,
        write_labels,
    )

    labels = read_labels(labels_path)
    texts = [text for _, text in labelled_texts(hh_rlhf_prompts(data_dir), labels)]
    references = {s.name: [i.text for i in s.read(data_dir)] for s in EVAL_SETS if s.name not in OWN_SETS}
    overlaps = find_overlaps(texts, references, threshold)
    excluded = {labels[i].row: f"near-duplicate of {name}" for i, name in overlaps.items()}
    write_labels(labels_path, with_exclusions(labels, excluded), HH_RLHF_HEADER)
    return Counter(overlaps.values())


def mark_contrast(directory: Path, data_dir: Path, threshold: float = DEFAULT_THRESHOLD) -> Counter[str]:
    """Write ``excluded.tsv`` beside the contrast files: the id of every contrast text near an
    evaluation text (no evaluation text is written), and only those; returns how many each set excluded."""
    from classifiers.evaluation.evalsets import EVAL_SETS, OWN_SETS
    from classifiers.training.contrast import EXCLUDED_FILE, read_contrast, text_id

    items = read_contrast(directory, keep_excluded=True)
    references = {s.name: [i.text for i in s.read(data_dir)] for s in EVAL_SETS if s.name not in OWN_SETS}
    overlaps = find_overlaps([i.text for i in items], references, threshold)
    lines = [
        "# contrast texts left out of training and held-out split: text id (sha256[:16]) and the "
        "evaluation-only set each near-duplicates (word-set Jaccard >= "
        f"{threshold}); written by `railguard classifiers decontaminate --contrast`"
    ]
    lines += [f"{text_id(items[i].text)}\tnear-duplicate of {name}" for i, name in sorted(overlaps.items())]
    (directory / EXCLUDED_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Counter(overlaps.values())
