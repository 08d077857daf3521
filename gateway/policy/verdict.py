"""The policy's vocabulary: what the guards report to it (`Finding`, one `GuardResult` per guard) and
what it decides (`Verdict`, with an `Action` for a `Stage`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Action", "Finding", "GuardResult", "Stage", "Steering", "Verdict"]


class Stage(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class Action(StrEnum):
    """What the policy does with a request. Listed from mildest to strictest."""

    ALLOW = "allow"
    STEER = "steer"
    REDACT = "redact"
    ESCALATE = "escalate"
    REFUSE = "refuse"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def blocks(self) -> bool:
        """Whether the request is answered by railguard instead of the model."""
        return self in (Action.ESCALATE, Action.REFUSE)


_SEVERITY = {a: i for i, a in enumerate(Action)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a guard saw: a category, a score in [0, 1], and where in the text when it knows."""

    category: str
    score: float
    source: str
    span: tuple[int, int] | None = None
    threshold: float = 0.5  # the source's own calibrated threshold; a policy may set another


@dataclass(frozen=True, slots=True)
class GuardResult:
    guard: str
    findings: tuple[Finding, ...]
    latency_ms: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True, slots=True)
class Steering:
    """A `steer` verdict's steering vector and scale (a local backend applies it)."""

    vector: str
    scale: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's decision on one stage of one request."""

    stage: Stage
    action: Action
    categories: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    principle: str | None = None
    message: str | None = None
    latency_ms: float = 0.0
    failed_guards: tuple[str, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    steering: tuple[Steering, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage.value,
            "action": self.action.value,
            "categories": list(self.categories),
            "principle": self.principle,
            "scores": self.scores,
            "failed_guards": list(self.failed_guards),
            "latency_ms": round(self.latency_ms, 3),
        }
