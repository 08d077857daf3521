"""The fusion as a cascade: the second, larger encoder only for texts the first is unsure of.

Late fusion (``fuse``) averages two models' probabilities and judges the mean against thresholds
calibrated for it. For most texts the first model's scores are far from every one of its thresholds,
and there the mean decides as the first model alone would. The cascade runs the second model only on
the texts the first scores within ``margin`` (in logits) of one of its own thresholds. Every other text
keeps the first model's decisions: its scores are moved onto the mean's scale, per head
``logit(p) - logit(t_first) + logit(t_fused)``, so that one set of thresholds (the mean's) judges
every text and a score is on the same side of it as the first model's score was of its own.

The margin is chosen on the validation split that calibrates the fusion
(:func:`classifiers.training.calibration.pick_margin`) and read from the fusion's calibration.

Cascades chain: with ``average=False`` the escalated texts take the second model's probabilities as
they are, already on the scale of the thresholds that judge them (an early exit in front of another
cascade, :mod:`classifiers.early_exit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from classifiers.decision import logit as _logit
from classifiers.heads import Calibration

__all__ = ["Array", "Cascade", "Mask", "fuse"]

Array = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Cascade:
    """Thresholds per head (the heads' column order): the first model's own and the mean's (or, with
    ``average=False``, those of the second model's probabilities, which escalated texts keep)."""

    first: npt.NDArray[np.float64]
    fused: npt.NDArray[np.float64]
    margin: float
    average: bool = True

    @classmethod
    def of(
        cls,
        names: Sequence[str],
        first: dict[str, float],
        fused: dict[str, float],
        margin: float,
        *,
        average: bool = True,
    ) -> Cascade:
        return cls(
            np.array([first.get(n, 0.5) for n in names], dtype=np.float64),
            np.array([fused.get(n, 0.5) for n in names], dtype=np.float64),
            float(margin),
            average,
        )

    @classmethod
    def calibrated(
        cls,
        names: Sequence[str],
        first: Calibration,
        fused: Calibration,
        *,
        source: object = "the fused calibration",
        fuse: str = "<encoder>",
        average: bool = True,
    ) -> Cascade:
        """From the first model's calibration and the fusion's, whose ``info`` holds the margin
        ``calibrate-fusion`` picked (``source``, the fused calibration's file, and ``fuse``, the
        second encoder, name what to recalibrate when it has none)."""
        found = fused.info.get("cascade")
        margin = found.get("margin") if isinstance(found, dict) else None
        if margin is None:
            raise ValueError(
                f"{source} has no cascade margin: recalibrate it "
                f"(railguard classifiers calibrate-fusion --fuse {fuse})"
            )
        return cls.of(names, first.thresholds, fused.thresholds, float(margin), average=average)

    def escalate(self, first: Array) -> Mask:
        """Which texts (rows of the first model's probabilities) the second model must also read."""
        near = np.abs(_logit(first) - _logit(self.first)) < self.margin
        return np.asarray(near.any(axis=1), dtype=np.bool_)

    def combine(self, first: Array, second: Array, escalated: Mask) -> Array:
        """Probabilities on the mean's scale: ``second`` holds the second model's rows for the
        escalated texts only, in order; the mean there (``average=False``: those rows as they are),
        the first model's moved scores elsewhere."""
        moved = _logit(first) - _logit(self.first) + _logit(self.fused)
        out = 1.0 / (1.0 + np.exp(-moved))
        out[escalated] = (first[escalated].astype(np.float64) + second) / 2 if self.average else second
        return out.astype(np.float32)


def fuse(first: Array, second: Callable[[Mask], Array], cascade: Cascade | None) -> tuple[Array, Mask]:
    """The fused probabilities and which texts the second model read: ``second(mask)`` gives its
    rows for the texts in ``mask``. Without a cascade, the mean of both models for every text."""
    if cascade is None:
        everything = np.ones(len(first), dtype=np.bool_)
        return ((first + second(everything)) / 2).astype(np.float32), everything
    escalated = cascade.escalate(first)
    return cascade.combine(first, second(escalated), escalated), escalated
