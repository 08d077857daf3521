"""Agreement between reviewers: percent agreement, Cohen's kappa (two raters), Fleiss' kappa (any number).

Kappa corrects agreement for chance: (p_o - p_e) / (1 - p_e), where p_o is the observed agreement and p_e
the agreement expected if raters labelled at random with their own label frequencies (Cohen) or the
pooled frequencies (Fleiss). 1 is perfect agreement, 0 chance, below 0 worse than chance. When every
label is the same (p_e = 1) kappa is undefined and reported as None.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from typing import Any


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


def summarise(
    items: Sequence[tuple[str, str, bool, str]],
    labels: Sequence[tuple[str, str, str]],
    gold: dict[str, str],
    labels_per_item: int,
) -> dict[str, Any]:
    """Queue counts, and agreement per reviewer, per reviewer pair (Cohen's kappa) and per category
    (Fleiss' kappa over items with ``labels_per_item`` labels); gold accuracy per reviewer.

    ``items``: (request id, category, is gold, status); ``labels``: (request id, reviewer, label key:
    what two labels must share to agree); ``gold``: the gold items' answer keys."""
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    gold_hits: dict[str, list[bool]] = defaultdict(list)
    for request_id, reviewer, key in labels:
        if request_id in gold:
            gold_hits[reviewer].append(gold[request_id] == key)
        else:
            by_item[request_id][reviewer] = key
    reviewers = sorted({r for _, r, _ in labels})
    pairs = []
    for a, b in combinations(reviewers, 2):
        both = [(x[a], x[b]) for x in by_item.values() if a in x and b in x]
        if both:
            pairs.append({"reviewers": [a, b], "items": len(both), "agreement": percent_agreement(both),
                          "cohen_kappa": cohen_kappa(both)})  # fmt: skip
    per_reviewer = []
    for r in reviewers:
        mine = [(x[r], other) for x in by_item.values() if r in x for name, other in x.items() if name != r]
        hits = gold_hits.get(r, [])
        per_reviewer.append({
            "reviewer": r,
            "labels": sum(r in x for x in by_item.values()),
            "agreement": percent_agreement(mine),
            "gold_items": len(hits),
            "gold_accuracy": sum(hits) / len(hits) if hits else None,
        })  # fmt: skip
    queue_items = [(r, category, status) for r, category, is_gold, status in items if not is_gold]
    per_category = []
    for category in sorted({c for _, c, _ in queue_items}):
        mine_items = [(r, s) for r, c, s in queue_items if c == category]
        full = [
            list(by_item[r].values()) for r, _ in mine_items if len(by_item.get(r, {})) >= labels_per_item
        ]
        statuses = [s for _, s in mine_items]
        per_category.append({
            "category": category,
            "items": len(statuses),
            "open": statuses.count("open"),
            "adjudication": statuses.count("adjudication"),
            "done": statuses.count("done"),
            "fully_labelled": len(full),
            "fleiss_kappa": fleiss_kappa(full),
        })  # fmt: skip
    statuses = [s for _, _, s in queue_items]
    return {
        "queue": {s: statuses.count(s) for s in ("open", "adjudication", "done")},
        "reviewers": per_reviewer,
        "pairs": pairs,
        "categories": per_category,
    }
