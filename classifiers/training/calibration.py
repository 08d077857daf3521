"""Thresholds on the validation split: per head, best F1 within a false-positive cap for ``unsafe``
and the attack heads; then one shift of every hazard and attack threshold (in logits) so that the
decision a guard makes on them together (``harmful``: any of them flagged,
:mod:`classifiers.decision`) keeps ``unsafe``'s cap on the split's benign texts. And a cascade's
margin (:mod:`classifiers.cascade`): the smallest of ``MARGINS`` that keeps it within ``TOLERANCE``
of the F1 of the model it stands in front of."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from classifiers.cascade import Array, Cascade, fuse
from classifiers.decision import decision_margin
from classifiers.evaluation.metrics import binary_metrics, pick_threshold
from classifiers.heads import Heads
from classifiers.taxonomy import ATTACKS, LEARNED, PII, UNSAFE

__all__ = [
    "MARGINS",
    "MAX_FPR",
    "MIN_VAL_POSITIVES",
    "TOLERANCE",
    "calibrate",
    "calibrate_decision",
    "calibrate_probabilities",
    "decision_metrics",
    "log_calibration",
    "pick_margin",
]

MAX_FPR = {UNSAFE: 0.05, **dict.fromkeys(ATTACKS, 0.02)}
MIN_VAL_POSITIVES = 5
MARGINS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
TOLERANCE = 0.005  # F1 the cascade may lose against the full fusion on validation


def calibrate(
    heads: Heads,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    max_fpr: float = MAX_FPR[UNSAFE],
) -> tuple[dict[str, float], dict[str, Any]]:
    return calibrate_probabilities(heads(x), y, known, max_fpr)


def calibrate_probabilities(
    probs: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    max_fpr: float = MAX_FPR[UNSAFE],
) -> tuple[dict[str, float], dict[str, Any]]:
    """Per head (columns in ``LEARNED`` order): the threshold and its validation metrics, and under
    ``"harmful"`` the decision's (:func:`calibrate_decision`)."""
    thresholds: dict[str, float] = {PII: 0.5}
    for j, head in enumerate(LEARNED):
        rows = known[:, j] > 0
        labels = y[rows, j].astype(np.int64)
        if labels.sum() < MIN_VAL_POSITIVES:
            thresholds[head] = 0.5
        else:
            t = pick_threshold(labels, probs[rows, j], MAX_FPR.get(head))
            thresholds[head] = round(min(max(t, 0.05), 0.95), 4)
    thresholds, decision = calibrate_decision(probs, y, known, thresholds, max_fpr)
    report: dict[str, Any] = {}
    for j, head in enumerate(LEARNED):
        rows = known[:, j] > 0
        report[head] = binary_metrics(y[rows, j].astype(np.int64), probs[rows, j], thresholds[head]).to_json()
    report["harmful"] = decision
    return thresholds, report


def calibrate_decision(
    probs: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    thresholds: dict[str, float],
    max_fpr: float = MAX_FPR[UNSAFE],
) -> tuple[dict[str, float], dict[str, Any]]:
    """Raise every hazard and attack threshold by one shift in logits, the smallest (none if none is
    needed) under which the guard's decision, any of those heads flagged, flags at most ``max_fpr``
    of the validation split's benign texts and has the best F1 there.

    Each head's own threshold keeps its own cap, but a guard refuses when any head fires, and their
    false positives add up (e5-small's shipped heads: 4.8 % of benign texts by ``unsafe`` alone, 7.4 %
    by any head). Texts count as harmful when any of those heads' labels is positive, as benign when
    ``unsafe`` is known negative and none is positive; the rest are left out.
    """
    cols = [j for j, head in enumerate(LEARNED) if head != PII]
    rows, labels = _decision_rows(y, known)
    margin = decision_margin(probs[rows], LEARNED, thresholds)
    shift = max(0.0, pick_threshold(labels, margin, max_fpr, default=0.0))
    shifted = dict(thresholds)
    for j in cols:
        t = thresholds[LEARNED[j]]
        raised = 1.0 / (1.0 + math.exp(-(math.log(t / (1.0 - t)) + shift)))
        shifted[LEARNED[j]] = min(math.ceil(raised * 1e4) / 1e4, 0.9999)  # up: never under the shift
    before = binary_metrics(labels, margin, 0.0).to_json()
    after = binary_metrics(labels, decision_margin(probs[rows], LEARNED, shifted), 0.0).to_json()
    return shifted, {"max_fpr": max_fpr, "shift": round(shift, 4), "before": before, **after}


def _decision_rows(
    y: npt.NDArray[np.float32], known: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """The texts the guard's decision is scored on and their labels: harmful when any hazard or
    attack head's label is positive, benign when ``unsafe`` is known negative and none is."""
    cols = [j for j, head in enumerate(LEARNED) if head != PII]
    positive = (y[:, cols] * known[:, cols]).sum(1) > 0
    u = LEARNED.index(UNSAFE)
    benign = (known[:, u] > 0) & (y[:, u] == 0) & ~positive
    rows = positive | benign
    return rows, positive[rows].astype(np.int64)


def decision_metrics(
    probs: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    thresholds: dict[str, float],
) -> dict[str, Any]:
    """The guard's decision (any hazard or attack head flagged) under ``thresholds``, scored."""
    rows, labels = _decision_rows(y, known)
    return binary_metrics(labels, decision_margin(probs[rows], LEARNED, thresholds), 0.0).to_json()


def log_calibration(log: Any, prefix: str, thresholds: dict[str, float], report: dict[str, Any]) -> None:
    for head in LEARNED:
        log(f"  {prefix}{head:24s} th={thresholds[head]:.3f} {report[head]}")
    decision = report["harmful"]
    log(
        f"  {prefix}harmful (any head): thresholds shifted {decision['shift']} logits; validation FPR "
        f"{decision['before']['fpr']} -> {decision['fpr']}, recall {decision['before']['recall']} -> "
        f"{decision['recall']}"
    )


def _f1s(
    probs: Array, y: Array, known: Array, names: Sequence[str], thresholds: dict[str, float], min_pos: int
) -> tuple[float, float]:
    """F1 of ``unsafe`` and the mean F1 over the heads with at least ``min_pos`` validation positives."""
    f1: dict[str, float] = {}
    for j, head in enumerate(names):
        rows = known[:, j] > 0
        labels = y[rows, j].astype(np.int64)
        if labels.sum() >= min_pos:
            f1[head] = binary_metrics(labels, probs[rows, j], thresholds[head]).f1 or 0.0
    return f1.get("unsafe", 0.0), float(np.mean(list(f1.values()))) if f1 else 0.0


def pick_margin(
    first: Array,
    second: Array,
    y: Array,
    known: Array,
    names: Sequence[str],
    first_thresholds: dict[str, float],
    fused_thresholds: dict[str, float],
    *,
    min_positives: int,
    average: bool = True,
) -> tuple[float, dict[str, Any]]:
    """The smallest margin of ``MARGINS`` whose cascade stays within ``TOLERANCE`` of the full
    fusion's validation F1 (``unsafe`` and macro), and what was measured for each margin. With
    ``average=False`` the target is ``second`` alone: what every text would get without the cascade."""
    full = fuse(first, second.__getitem__, None)[0] if average else second
    target = _f1s(full, y, known, names, fused_thresholds, min_positives)
    benign = (known[:, list(names).index("unsafe")] > 0) & (y[:, list(names).index("unsafe")] == 0)
    tried: dict[str, Any] = {}
    chosen = MARGINS[-1]
    for margin in MARGINS:
        cascade = Cascade.of(names, first_thresholds, fused_thresholds, margin, average=average)
        probs, escalated = fuse(first, second.__getitem__, cascade)
        unsafe, macro = _f1s(probs, y, known, names, fused_thresholds, min_positives)
        tried[str(margin)] = {
            "escalated": round(float(escalated.mean()), 4),
            "escalated_benign": round(float(escalated[benign].mean()), 4) if benign.any() else None,
            "unsafe_f1": round(unsafe, 4),
            "macro_f1": round(macro, 4),
        }
        if unsafe >= target[0] - TOLERANCE and macro >= target[1] - TOLERANCE:
            chosen = margin
            break
    report = {
        "margin": chosen,
        "tolerance": TOLERANCE,
        "fusion": {"unsafe_f1": round(target[0], 4), "macro_f1": round(target[1], 4)},
        "tried": tried,
    }
    return chosen, report
