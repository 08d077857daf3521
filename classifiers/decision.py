"""The decision a guard makes on a text's scores: ``harmful`` when any hazard or attack head (every
learned head; PII is redacted, not refused) is at or above its threshold. Its margin, in logits, is
how far the nearest head is past its threshold (negative: how far the highest is below)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from classifiers.taxonomy import PII

__all__ = ["decision_margin", "logit"]

_EPS = 1e-7


def logit(p: npt.ArrayLike) -> npt.NDArray[np.float64]:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q))


def decision_margin(
    probs: npt.NDArray[np.floating], names: Sequence[str], thresholds: Mapping[str, float]
) -> npt.NDArray[np.float64]:
    """Per row: ``max over heads of logit(p) - logit(threshold)``; ``>= 0`` means harmful."""
    cols = [j for j, n in enumerate(names) if n != PII]
    t = np.array([thresholds.get(names[j], 0.5) for j in cols])
    return np.asarray((logit(probs[:, cols]) - logit(t)).max(axis=1))
