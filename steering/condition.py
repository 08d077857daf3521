"""Fitting the condition of a conditional vector (CAST, Lee et al. 2024) from contrastive prompts.

At every layer, the condition direction is the difference of means of the last prompt token's
residual stream over the positive prompts (e.g. harmful) and the negative ones (harmless); each
prompt's score is its cosine similarity with that direction. The layer kept is the one whose scores
separate the two sets best (largest Youden J = TPR - FPR, then largest margin), and the threshold
sits halfway between the scores on either side of the best cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steering.extract import prompt_states
from steering.types import Condition

__all__ = ["ConditionFit", "best_threshold", "fit_condition"]


@dataclass(frozen=True)
class ConditionFit:
    condition: Condition
    tpr: float  # positives that meet it, on the prompts it was fitted on
    fpr: float  # negatives that meet it
    per_layer: tuple[tuple[int, float, float], ...]  # (layer, tpr, fpr) at each layer's best cut

    def summary(self) -> dict[str, Any]:
        return {
            "layer": self.condition.layer,
            "threshold": self.condition.threshold,
            "fitted_tpr": self.tpr,
            "fitted_fpr": self.fpr,
            "per_layer": [{"layer": la, "tpr": t, "fpr": f} for la, t, f in self.per_layer],
        }


def best_threshold(positive: torch.Tensor, negative: torch.Tensor) -> tuple[float, float, float, float]:
    """`(threshold, tpr, fpr, margin)` of the cut `score >= threshold` with the largest TPR - FPR
    (then the widest gap between the scores either side of it)."""
    cuts = torch.cat([positive, negative]).sort().values
    best = (float("inf"), 0.0, 0.0, 0.0)
    best_key = (-1.0, -1.0)
    for i in range(len(cuts)):
        low = float(cuts[i - 1]) if i else float(cuts[0]) - 1.0
        threshold = (low + float(cuts[i])) / 2
        tpr = float((positive >= threshold).float().mean())
        fpr = float((negative >= threshold).float().mean())
        margin = float(cuts[i]) - low
        key = (tpr - fpr, margin)
        if key > best_key:
            best_key, best = key, (threshold, tpr, fpr, margin)
    return best


def fit_condition(
    model: Any,
    tokenizer: Any,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
) -> ConditionFit:
    """The condition that best tells `positive` prompts from `negative` ones, over `layers`."""
    if not positive or not negative:
        raise ValueError("fitting a condition needs positive and negative prompts")
    pos = prompt_states(model, tokenizer, positive)
    neg = prompt_states(model, tokenizer, negative)
    candidates = range(pos.shape[1]) if layers is None else layers
    fits = []
    for layer in candidates:
        direction = pos[:, layer].mean(dim=0) - neg[:, layer].mean(dim=0)
        unit = direction / direction.norm().clamp(min=1e-12)

        def cosine(states: torch.Tensor, unit: torch.Tensor = unit) -> torch.Tensor:
            scores: torch.Tensor = (states @ unit) / states.norm(dim=-1).clamp(min=1e-12)
            return scores

        threshold, tpr, fpr, margin = best_threshold(cosine(pos[:, layer]), cosine(neg[:, layer]))
        fits.append((tpr - fpr, margin, layer, direction, threshold, tpr, fpr))
    _, _, layer, direction, threshold, tpr, fpr = max(fits, key=lambda f: (f[0], f[1]))
    return ConditionFit(
        Condition(layer, direction.contiguous(), threshold),
        tpr,
        fpr,
        tuple((f[2], f[5], f[6]) for f in fits),
    )
