"""Binary metrics with numpy only: precision, recall, F1, FPR, AUPRC, and threshold picking."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BinaryMetrics", "average_precision", "binary_metrics", "pick_threshold"]

Floats = npt.NDArray[np.floating]
Ints = npt.NDArray[np.integer]


@dataclass(frozen=True, slots=True)
class BinaryMetrics:
    n: int
    positives: int
    precision: float | None
    recall: float | None
    f1: float | None
    fpr: float | None
    auprc: float | None

    def to_json(self) -> dict[str, float | int | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def average_precision(labels: Ints, scores: Floats) -> float | None:
    """Area under the precision-recall curve (step-wise, as scikit-learn computes it)."""
    pos = int(labels.sum())
    if pos == 0 or pos == len(labels):
        return None
    order = np.argsort(-scores, kind="stable")
    y = labels[order]
    tp = np.cumsum(y)
    precision = tp / np.arange(1, len(y) + 1)
    return float((precision * y).sum() / pos)


def binary_metrics(labels: Ints, scores: Floats, threshold: float) -> BinaryMetrics:
    pred = scores >= threshold
    y = labels.astype(bool)
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    tn = int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else (0.0 if recall is not None else None)
    )
    fpr = fp / (fp + tn) if fp + tn else None
    return BinaryMetrics(
        len(labels), int(y.sum()), precision, recall, f1, fpr, average_precision(labels, scores)
    )


def pick_threshold(labels: Ints, scores: Floats, max_fpr: float | None = None, default: float = 0.5) -> float:
    """The threshold with the best F1 whose false-positive rate stays within ``max_fpr``."""
    y = labels.astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return default
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order]
    tp, fp = np.cumsum(yy), np.cumsum(~yy)
    last = np.r_[s[1:] != s[:-1], True]  # a threshold at s[i] flags everything up to the last tie
    f1 = 2 * tp / (tp + fp + pos)
    ok = last & ((fp / neg <= max_fpr) if max_fpr is not None else True)
    if not ok.any():
        return float(s[0]) + 1e-6
    i = int(np.argmax(np.where(ok, f1, -1.0)))
    return float(s[i])
