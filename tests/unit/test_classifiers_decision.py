"""The guard's decision over all heads (classifiers/decision.py) and its joint calibration
(classifiers/training/calibration.py: calibrate_decision): the decision the evaluation scores is the
one serving makes, and its false positives, summed over heads, keep the cap on validation."""

from __future__ import annotations

import numpy as np

from classifiers.decision import decision_margin, logit
from classifiers.evaluation.metrics import binary_metrics
from classifiers.scores import TextScores
from classifiers.taxonomy import LEARNED, PII, UNSAFE
from classifiers.training.calibration import MAX_FPR, calibrate_decision, calibrate_probabilities

HATE = LEARNED.index("hate")
U = LEARNED.index(UNSAFE)


def test_the_margin_decides_as_serving_does() -> None:
    rng = np.random.default_rng(0)
    names = (*LEARNED, PII)
    thresholds = {n: float(t) for n, t in zip(names, rng.uniform(0.5, 0.95, len(names)), strict=True)}
    probs = rng.beta(0.5, 2.5, size=(500, len(names))).astype(np.float32)
    margin = decision_margin(probs, names, thresholds)
    scores = [dict(zip(names, map(float, row), strict=True)) for row in probs]
    harmful = [TextScores(s, "en", (), thresholds).harmful for s in scores]
    assert 50 < sum(harmful) < 500  # both outcomes occur
    assert list(margin >= 0) == harmful
    # PII never decides: a text with only a PII score above its threshold is not harmful
    only_pii = np.zeros((1, len(names)), dtype=np.float32)
    only_pii[0, -1] = 1.0
    assert decision_margin(only_pii, names, thresholds)[0] < 0


def _validation(seed: int, hate_false_positives: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1,000 benign texts (every label known 0) and 1,000 harmful ones (unsafe 1, hazards unknown);
    ``unsafe`` flags 40 benign texts, ``hate`` another ``hate_false_positives``."""
    rng = np.random.default_rng(seed)
    n = 1000
    probs = np.full((2 * n, len(LEARNED)), 0.01, dtype=np.float32)
    probs[:n, U] = rng.uniform(0.0, 0.45, n)
    probs[:40, U] = rng.uniform(0.55, 0.9, 40)
    probs[n:, U] = rng.uniform(0.4, 1.0, n)
    probs[40 : 40 + hate_false_positives, HATE] = rng.uniform(0.55, 0.7, hate_false_positives)
    y = np.zeros_like(probs)
    y[n:, U] = 1.0
    known = np.ones_like(probs)
    known[n:] = 0.0
    known[n:, U] = 1.0
    return probs, y, known


def test_heads_whose_false_positives_add_up_are_raised_together() -> None:
    probs, y, known = _validation(0, hate_false_positives=40)
    thresholds = {n: 0.5 for n in (*LEARNED, PII)}
    shifted, info = calibrate_decision(probs, y, known, thresholds)
    assert info["before"]["fpr"] > MAX_FPR[UNSAFE]  # 80 of 1,000 benign texts flagged by some head
    assert info["shift"] > 0 and info["fpr"] <= MAX_FPR[UNSAFE]
    assert info["recall"] < info["before"]["recall"]  # the price, reported
    assert shifted[PII] == 0.5
    for head in LEARNED:  # one shift in logits for every head, rounded up to 4 decimals
        assert 0 <= float(logit(shifted[head]) - logit(0.5)) - info["shift"] < 1e-3
    # what the thresholds decide on the validation texts is what the report says
    decided = decision_margin(probs, LEARNED, shifted) >= 0
    assert binary_metrics(y[:, U].astype(np.int64), decided.astype(np.float32), 0.5).fpr == info["fpr"]


def test_a_decision_within_the_cap_is_left_alone() -> None:
    probs, y, known = _validation(1, hate_false_positives=5)
    thresholds = {n: 0.5 for n in (*LEARNED, PII)}
    shifted, info = calibrate_decision(probs, y, known, thresholds)
    assert info["shift"] == 0.0 and shifted == thresholds
    assert info["fpr"] == info["before"]["fpr"] <= MAX_FPR[UNSAFE]


def test_calibration_reports_the_decision_beside_each_head() -> None:
    probs, y, known = _validation(2, hate_false_positives=40)
    thresholds, report = calibrate_probabilities(probs, y, known)
    assert set(report) == {*LEARNED, "harmful"}
    assert report["harmful"]["fpr"] <= MAX_FPR[UNSAFE]
    assert report[UNSAFE]["fpr"] <= MAX_FPR[UNSAFE]
    # each head's row is measured at its served (shifted) threshold
    rows = known[:, U] > 0
    served = binary_metrics(y[rows, U].astype(np.int64), probs[rows, U], thresholds[UNSAFE])
    assert report[UNSAFE] == served.to_json()


def test_the_operating_point_is_a_setting() -> None:
    """`--max-fpr`: a wider cap keeps thresholds lower (more recall), a narrower one raises them."""
    probs, y, known = _validation(3, hate_false_positives=40)
    thresholds = {n: 0.5 for n in (*LEARNED, PII)}
    loose, wide = calibrate_decision(probs, y, known, thresholds, max_fpr=0.09)
    strict, narrow = calibrate_decision(probs, y, known, thresholds, max_fpr=0.02)
    assert wide["max_fpr"] == 0.09 and narrow["max_fpr"] == 0.02
    assert narrow["fpr"] <= 0.02 < wide["fpr"] <= 0.09
    assert narrow["recall"] < wide["recall"]
    assert all(strict[h] > loose[h] for h in LEARNED)
