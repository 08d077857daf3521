"""Stability to text that carries no meaning: the guard's verdict on a prompt, and on the same prompt
with an irrelevant suffix appended (a reference number, a signature, a polite closing, trailing
spaces). A verdict that flips there is noise in the classifier, not a judgement."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["SUFFIXES", "Stability", "suffix_stability"]

SUFFIXES: dict[str, str] = {
    "reference number": " (ref. 48213-B)",
    "signature": "\n\n-- \nMaria Keller",
    "polite closing": " Thanks a lot in advance!",
    "trailing spaces": "   ",
}


@dataclass(frozen=True, slots=True)
class Stability:
    n: int  # prompts
    changed: dict[str, int]  # per suffix, prompts whose verdict changed

    @property
    def changed_share(self) -> float:
        return sum(self.changed.values()) / (self.n * len(self.changed)) if self.n else 0.0

    def to_json(self) -> dict[str, object]:
        return {"prompts": self.n, "changed": self.changed, "changed_share": round(self.changed_share, 4)}

    def to_markdown(self, name: str) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.changed.items())
        return (
            f"**{name}, appended suffixes**: the verdict changed on {self.changed_share:.2%} of "
            f"{self.n} prompts x {len(self.changed)} suffixes ({parts})."
        )


def suffix_stability(
    texts: Sequence[str], decide: Callable[[Sequence[str]], npt.NDArray[np.bool_]]
) -> Stability:
    """How many of ``texts`` get another verdict from ``decide`` with each suffix appended."""
    before = decide(texts)
    changed = {
        name: int((decide([t + suffix for t in texts]) != before).sum()) for name, suffix in SUFFIXES.items()
    }
    return Stability(len(texts), changed)
