from __future__ import annotations

import numpy as np

from classifiers.evaluation.metrics import average_precision, binary_metrics, pick_threshold


def test_binary_metrics() -> None:
    y = np.array([1, 1, 0, 0, 1])
    s = np.array([0.9, 0.4, 0.6, 0.1, 0.8])
    m = binary_metrics(y, s, 0.5)
    assert (m.precision, m.recall, m.fpr) == (2 / 3, 2 / 3, 0.5)
    assert m.f1 is not None and abs(m.f1 - 2 / 3) < 1e-9


def test_average_precision_perfect_and_known() -> None:
    assert average_precision(np.array([1, 0]), np.array([0.9, 0.1])) == 1.0
    # ranks: 1 (pos), 0 (neg), 1 (pos) -> (1/1 + 2/3) / 2
    ap = average_precision(np.array([1, 0, 1]), np.array([0.9, 0.5, 0.2]))
    assert ap is not None and abs(ap - (1 + 2 / 3) / 2) < 1e-9
    assert average_precision(np.array([1, 1]), np.array([0.2, 0.3])) is None


def test_pick_threshold_honours_fpr_cap() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(200), np.zeros(200)].astype(np.int64)
    s = np.r_[rng.normal(0.7, 0.15, 200), rng.normal(0.4, 0.15, 200)]
    free = pick_threshold(y, s)
    capped = pick_threshold(y, s, max_fpr=0.02)
    assert capped > free
    fpr = binary_metrics(y, s, capped).fpr
    assert fpr is not None and fpr <= 0.02
