"""What one row of a batch asks for, and what the engine reports back. No torch at import time.

Extension points for constrained decoding and steering (issue 5) live here:

* `RowSpec.processors`: per-row `LogitsProcessor`s, called in order on that row's next-token logits
  (after the forward pass, before temperature and top-p). Build them once per constraint, fresh
  state per row.
* `RowSpec.steering`: per-row `SteeringVector`s (from `steering.types`), added (already scaled) to
  or ablated from the residual stream after the given decoder layer, for that row only, at the
  positions the vector names (prompt, generated tokens, or both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from steering.types import SteeringVector

if TYPE_CHECKING:
    import torch

__all__ = [
    "FinishReason",
    "LogitsProcessor",
    "RowEvent",
    "RowSpec",
    "SamplingParams",
    "SteeringVector",
]

FinishReason = Literal["stop", "length"]


class LogitsProcessor(Protocol):
    """Reshape one row's next-token scores.

    `generated` holds the row's tokens so far (no prompt); `logits` is a float32 vector over the
    vocabulary that may be changed in place. Returns the scores.
    """

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None  # None: a fresh random seed
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class RowSpec:
    """One sequence to generate. A request with `n` choices is `n` rows that share a prompt."""

    prompt_ids: tuple[int, ...]
    sampling: SamplingParams
    index: int = 0  # the choice index in the response
    adapter: str | None = None  # a LoRA adapter name; None: the base model
    processors: tuple[LogitsProcessor, ...] = ()
    steering: tuple[SteeringVector, ...] = field(default=())


@dataclass(frozen=True)
class RowEvent:
    """Text that became final for choice `index`; `finish_reason` is set on the row's last event."""

    index: int
    text: str
    completion_tokens: int
    finish_reason: FinishReason | None = None
