"""What a model needs to apply one steering vector. No torch at import time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["Mode", "Positions", "SteeringVector"]

Positions = Literal["all", "prompt", "generated"]
"""Where a vector acts: every position, the prompt's positions only, or generated tokens only."""

Mode = Literal["add", "ablate"]
"""`add`: add `vector` to the residual stream. `ablate`: project the direction of `vector` out of it."""


@dataclass(frozen=True)
class SteeringVector:
    """`vector` (hidden size, scale applied) acting on the output of decoder layer `layer` (0-based)."""

    layer: int
    vector: torch.Tensor
    positions: Positions = "all"
    mode: Mode = "add"
