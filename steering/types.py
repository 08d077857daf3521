"""What a model needs to apply one steering vector. No torch at import time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["Condition", "Mode", "Positions", "SteeringVector"]

Positions = Literal["all", "prompt", "generated"]
"""Where a vector acts: every position, the prompt's positions only, or generated tokens only."""

Mode = Literal["add", "ablate"]
"""`add`: add `vector` to the residual stream. `ablate`: project the direction of `vector` out of it."""


@dataclass(frozen=True, eq=False)
class Condition:
    """When a vector applies (conditional activation steering, CAST: Lee et al. 2024).

    A row of a batch is steered only if its prompt, read after decoder layer `layer` at the last
    prompt token (the opening of the model's turn), points along `direction`: cosine similarity at
    least `threshold`. The decision is made once per row, in an unsteered pass over the prompt
    (`BatchSteering.read`), and holds for the steered prompt and every token it then generates.
    """

    layer: int
    direction: torch.Tensor
    threshold: float


@dataclass(frozen=True)
class SteeringVector:
    """`vector` (hidden size, scale applied) acting on the output of decoder layer `layer` (0-based).

    With a `condition`, only the rows whose prompt meets it are steered.
    """

    layer: int
    vector: torch.Tensor
    positions: Positions = "all"
    mode: Mode = "add"
    condition: Condition | None = None
