"""Agreement between reviewers: percent agreement, Cohen's kappa (two raters), Fleiss' kappa (any number).

Kappa corrects agreement for chance: (p_o - p_e) / (1 - p_e), where p_o is the observed agreement and p_e
the agreement expected if raters labelled at random with their own label frequencies (Cohen) or the
pooled frequencies (Fleiss). 1 is perfect agreement, 0 chance, below 0 worse than chance. When every
label is the same (p_e = 1) kappa is undefined and reported as None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def percent_agreement(pairs: Sequence[tuple[str, str]]) -> float | None:
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Two raters' labels of the same items, one (rater A, rater B) pair per item."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[k] * second[k] for k in first) / (n * n)
    return None if expected == 1.0 else (observed - expected) / (1.0 - expected)


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float | None:
    """Each item's labels (the same number of raters per item; items with fewer than 2 are skipped)."""
    rated = [list(labels) for labels in items if len(labels) >= 2]
    if not rated:
        return None
    raters = len(rated[0])
    rated = [labels for labels in rated if len(labels) == raters]
    n = len(rated)
    totals: Counter[str] = Counter()
    agreement = 0.0
    for labels in rated:
        counts = Counter(labels)
        totals.update(counts)
        agreement += (sum(c * c for c in counts.values()) - raters) / (raters * (raters - 1))
    observed = agreement / n
    expected = sum((c / (n * raters)) ** 2 for c in totals.values())
    return None if expected == 1.0 else (observed - expected) / (1.0 - expected)
