"""The fusion's cascade (classifiers/cascade.py): which texts reach the second model, what the others
are scored, and how the margin is picked on validation."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers.cascade import Cascade
from classifiers.heads import Calibration
from classifiers.training.calibration import MARGINS, pick_margin

NAMES = ("unsafe", "jailbreak")
FIRST = {"unsafe": 0.7, "jailbreak": 0.3}
FUSED = {"unsafe": 0.45, "jailbreak": 0.6}


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_texts_near_a_threshold_are_escalated_and_only_those() -> None:
    cascade = Cascade.of(NAMES, FIRST, FUSED, margin=1.0)
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    probs = np.array(
        [
            [sig(_logit(0.7) + 0.9), 0.01],  # unsafe within the margin above its threshold
            [sig(_logit(0.7) - 1.1), 0.01],  # both outside
            [0.001, sig(_logit(0.3) - 0.5)],  # jailbreak within, below its threshold
            [0.999, 0.999],
        ],
        dtype=np.float32,
    )
    assert cascade.escalate(probs).tolist() == [True, False, True, False]


def test_the_others_keep_the_first_models_decisions_on_the_fused_scale() -> None:
    rng = np.random.default_rng(0)
    first = rng.uniform(0, 1, (500, 2)).astype(np.float32)
    second = rng.uniform(0, 1, (500, 2)).astype(np.float32)
    cascade = Cascade.of(NAMES, FIRST, FUSED, margin=0.8)
    escalated = cascade.escalate(first)
    assert 0 < escalated.sum() < len(first)
    out = cascade.combine(first, second[escalated], escalated)
    fused_th = np.array([FUSED[n] for n in NAMES])
    first_th = np.array([FIRST[n] for n in NAMES])
    kept = ~escalated
    np.testing.assert_array_equal(out[kept] >= fused_th, first[kept] >= first_th)
    np.testing.assert_allclose(out[escalated], (first[escalated] + second[escalated]) / 2, atol=1e-6)
    # monotone: the order of the first model's scores survives the move, per head
    for j in range(2):
        order = np.argsort(first[kept, j])
        assert np.all(np.diff(out[kept, j][order]) >= 0)
    assert out.dtype == np.float32 and ((out >= 0) & (out <= 1)).all()


def test_a_margin_of_zero_escalates_nothing_and_a_huge_one_everything() -> None:
    first = np.array([[0.69, 0.31], [0.2, 0.9]], dtype=np.float32)
    assert not Cascade.of(NAMES, FIRST, FUSED, 0.0).escalate(first).any()
    assert Cascade.of(NAMES, FIRST, FUSED, 1e9).escalate(first).all()


def _validation(second_noise: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Labels, and two models: the first noisy, the second as noisy as ``second_noise``."""
    rng = np.random.default_rng(seed)
    n = 4000
    y = (rng.uniform(size=(n, 2)) < 0.4).astype(np.float32)
    known = np.ones_like(y)
    signal = np.where(y > 0, 1.5, -1.5)
    sig = lambda x: (1 / (1 + np.exp(-x))).astype(np.float32)  # noqa: E731
    first = sig(signal + rng.normal(0, 1.5, y.shape))
    second = sig(signal + rng.normal(0, second_noise, y.shape))
    return first, second, y, known


def test_the_margin_is_the_smallest_that_keeps_the_fusions_f1() -> None:
    th = {"unsafe": 0.5, "jailbreak": 0.5}
    # the second model is far better: near the threshold it decides, so the margin must grow
    first, second, y, known = _validation(second_noise=0.3)
    margin, report = pick_margin(first, second, y, known, NAMES, th, th, min_positives=5)
    assert margin > MARGINS[0]
    tried = report["tried"]
    assert list(tried) == [str(m) for m in MARGINS[: MARGINS.index(margin) + 1]]  # stopped at the first
    fusion = report["fusion"]
    assert tried[str(margin)]["unsafe_f1"] >= fusion["unsafe_f1"] - report["tolerance"]
    before = tried[str(MARGINS[MARGINS.index(margin) - 1])]
    assert (
        before["unsafe_f1"] < fusion["unsafe_f1"] - report["tolerance"]
        or before["macro_f1"] < fusion["macro_f1"] - report["tolerance"]
    )
    escalated = [t["escalated"] for t in tried.values()]
    assert escalated == sorted(escalated) and escalated[-1] < 1.0  # wider margins escalate more


def test_a_second_model_that_adds_nothing_needs_the_smallest_margin() -> None:
    th = {"unsafe": 0.5, "jailbreak": 0.5}
    first, _, y, known = _validation(second_noise=0.3)
    margin, _ = pick_margin(first, first.copy(), y, known, NAMES, th, th, min_positives=5)
    assert margin == MARGINS[0]


def test_a_fused_calibration_without_a_margin_is_refused() -> None:
    first = Calibration("a", "int8", 256, FIRST, {})
    fused = Calibration("a+b", "int8", 256, FUSED, {})
    with pytest.raises(ValueError, match="no cascade margin"):
        Cascade.calibrated(NAMES, first, fused)
    fused = Calibration("a+b", "int8", 256, FUSED, {"cascade": {"margin": 2.5}})
    assert Cascade.calibrated(NAMES, first, fused).margin == 2.5


def test_fuse_asks_the_second_model_for_the_escalated_rows_only() -> None:
    from classifiers.cascade import fuse

    first = np.array([[0.69, 0.01], [0.01, 0.01], [0.99, 0.99]], dtype=np.float32)
    second = np.array([[0.2, 0.4], [0.3, 0.3], [0.5, 0.5]], dtype=np.float32)
    asked: list[list[bool]] = []

    def read(mask: np.ndarray) -> np.ndarray:
        asked.append(mask.tolist())
        return second[mask]

    probs, read_rows = fuse(first, read, None)  # the plain mean: every text
    np.testing.assert_allclose(probs, (first + second) / 2, atol=1e-7)
    assert read_rows.all() and asked == [[True, True, True]]
    probs, read_rows = fuse(first, read, Cascade.of(NAMES, FIRST, FUSED, margin=1.0))
    assert read_rows.tolist() == [True, False, False] and asked[-1] == [True, False, False]
    np.testing.assert_allclose(probs[0], (first[0] + second[0]) / 2, atol=1e-7)
