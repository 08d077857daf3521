"""Contrast pairs written for railguard (``classifiers/contrast/<lang>.tsv``): each harmful request
next to safe texts that share its words, in many languages.

Lines are ``pair<TAB>label<TAB>kind<TAB>text``; ``label`` is ``benign``, a hazard or attack, or two of
them joined by ``+`` (a threat is ``violent_crimes+hate``); ``kind`` says how the text is harmful
(``direct``, ``indirect``) or why a contrast is safe (``homonym``, ``fiction``, ``support_seeking``...).

A pair stays whole on one side of the split: a fifth of the pairs, by a hash of the pair id, is the
held-out split (never trained on; the evaluation's own categories and the suffix-stability figure are
measured there), so a model is never scored on the twin of a text it learned. Rows listed in
``excluded.tsv`` (``railguard classifiers decontaminate --contrast`` writes it: near-duplicates of an
evaluation-only text) are left out of both sides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from classifiers.training.seed import Example, label_set

__all__ = [
    "CONTRAST_DIR",
    "EXCLUDED_FILE",
    "HELD_OUT_SHARE",
    "ContrastItem",
    "examples",
    "labels_of",
    "read_contrast",
    "split_pairs",
]

CONTRAST_DIR = Path(__file__).resolve().parent.parent / "contrast"
EXCLUDED_FILE = "excluded.tsv"
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class ContrastItem:
    pair: str
    label: str  # "benign" or names joined by "+"
    kind: str
    text: str
    lang: str

    @property
    def harmful(self) -> bool:
        return self.label != "benign"

    @property
    def categories(self) -> frozenset[str]:
        return frozenset() if self.label == "benign" else frozenset(self.label.split("+"))


def labels_of(label: str) -> dict[str, int]:
    """Every head's label: each name's labels as the seed files give them (``label_set``), merged; a
    head one name sets positive stays positive ("violent_crimes+hate": unsafe, both hazards)."""
    merged: dict[str, int] = {}
    for name in label.split("+"):
        for head, value in label_set(name).items():
            merged[head] = max(value, merged.get(head, 0))
    return merged


def _excluded(directory: Path) -> set[str]:
    path = directory / EXCLUDED_FILE
    if not path.is_file():
        return set()
    rows = path.read_text(encoding="utf-8").splitlines()
    return {r.split("\t", 1)[0] for r in rows if r.strip() and not r.startswith("#")}


def text_id(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def read_contrast(directory: Path = CONTRAST_DIR, *, keep_excluded: bool = False) -> list[ContrastItem]:
    """Every item, files in name order; a malformed line is a ValueError naming file and line."""
    excluded = set() if keep_excluded else _excluded(directory)
    items: list[ContrastItem] = []
    for path in sorted(p for p in directory.glob("*.tsv") if p.name != EXCLUDED_FILE):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            where = f"{path.name}:{number}"
            if len(fields) != 4 or not all(f.strip() for f in fields):
                raise ValueError(f"{where}: expected pair<TAB>label<TAB>kind<TAB>text")
            pair, label, kind, text = (f.strip() for f in fields)
            try:
                labels_of(label)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if text_id(text) not in excluded:
                items.append(ContrastItem(pair, label, kind, text, path.stem))
    return items


def held_out(pair: str, share: float = HELD_OUT_SHARE) -> bool:
    digest = hashlib.sha1(pair.encode(), usedforsecurity=False).digest()[:4]
    return int.from_bytes(digest, "big") / 2**32 < share


def split_pairs(items: list[ContrastItem]) -> tuple[list[ContrastItem], list[ContrastItem]]:
    """(training, held-out), whole pairs on one side."""
    train = [i for i in items if not held_out(i.pair)]
    return train, [i for i in items if held_out(i.pair)]


def examples(directory: Path = CONTRAST_DIR) -> list[Example]:
    """The training side as training examples."""
    train, _ = split_pairs(read_contrast(directory))
    return [Example(i.text, labels_of(i.label), f"contrast/{i.lang}", i.lang) for i in train]
