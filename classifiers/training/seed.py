"""The examples the repository ships (``classifiers/seed/<lang>[_<what>].tsv``, ``kind<TAB>text``
lines), and the labels each kind of example trains.

Labels per example: 1 positive, 0 negative; a head missing from ``labels`` is unknown for that
example and does not contribute to that head's loss. Files are read in the order of their names,
which decides which label a text written twice keeps and which texts smooth the int8 encoder
(:func:`classifiers.export.smoothing.calibration_texts`): a renamed file must keep its place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from classifiers.taxonomy import ATTACKS, HAZARD_NAMES, LEARNED, UNSAFE

__all__ = ["SEED_DIR", "Example", "label_set", "read_seed"]

SEED_DIR = Path(__file__).resolve().parent.parent / "seed"


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    labels: Mapping[str, int]
    source: str
    lang: str = "en"


def label_set(kind: str) -> dict[str, int]:
    """Labels for one kind of example.

    ``benign``: every head 0. A hazard name: unsafe and that hazard 1, other hazards and attacks 0.
    ``unsafe``: unsafe 1, hazards unknown, attacks 0. ``jailbreak`` / ``prompt_injection``: that
    attack 1; the other heads unknown (a template may or may not carry a harmful request).
    """
    if kind == "benign":
        return dict.fromkeys(LEARNED, 0)
    if kind in HAZARD_NAMES:
        return {**dict.fromkeys((UNSAFE, *HAZARD_NAMES, *ATTACKS), 0), UNSAFE: 1, kind: 1}
    if kind == UNSAFE:
        return {UNSAFE: 1, **dict.fromkeys(ATTACKS, 0)}
    if kind in ATTACKS:
        return {kind: 1}
    raise ValueError(f"unknown label kind {kind!r}")


def read_seed(seed_dir: Path = SEED_DIR) -> Iterator[Example]:
    """The examples the repository ships: ``<lang>.tsv`` files of ``kind<TAB>text`` lines."""
    for path in sorted(seed_dir.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            kind, text = line.split("\t", 1)
            lang = path.stem.split("_")[0]  # en_contrast.tsv is English too
            yield Example(text.strip(), label_set(kind.strip()), f"seed/{path.stem}", lang)
