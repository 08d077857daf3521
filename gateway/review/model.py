"""What a review is about: a label (a reviewer's judgement, or an adjudicator's final one), the roles,
and the error every review operation raises."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.policy.verdict import Action

Role = Literal["reviewer", "adjudicator", "admin"]
ROLES: tuple[Role, ...] = ("reviewer", "adjudicator", "admin")


class ReviewError(ValueError):
    """A review operation that cannot be done; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Label(BaseModel):
    """One reviewer's judgement of one item (also an adjudicator's final decision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    category: str = Field("none", min_length=1, max_length=64, pattern=r"^[a-z0-9_/-]+$")
    ideal_answer: str | None = Field(None, max_length=20_000)
    ranking: list[int] | None = Field(None, max_length=16, description="Candidate answers, best first")
    reason: str | None = Field(None, max_length=2_000, description="Required for an adjudication")

    def key(self) -> str:
        """What two labels must share to agree: the action and the category."""
        return f"{self.action.value}/{self.category}"
