"""What a review is about: a label (a reviewer's judgement, or an adjudicator's final one), the roles,
how an item's labels settle it, the error every review operation raises, and the API's other request
bodies (a role change, a user's report)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    ranking: list[int] | None = Field(
        None, max_length=16, description="The item's candidate answers (indices), best first"
    )
    reason: str | None = Field(None, max_length=2_000, description="Required for an adjudication")

    def key(self) -> str:
        """What two labels must share to agree: the action and the category."""
        return f"{self.action.value}/{self.category}"


class RoleChange(BaseModel):
    """The body of ``PUT /v1/review/reviewers/{reviewer}/role``."""

    model_config = ConfigDict(frozen=True)

    role: Role


class CandidateRequest(BaseModel):
    """The body of ``POST /v1/review/items/{id}/candidates``: how to regenerate the answers to rank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(3, ge=2, le=4, description="How many answers to generate")
    model: str | None = Field(
        None, min_length=1, max_length=256, description="A served model id; default: the record's model"
    )
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, ge=16, le=2048)


def check_ranking(label: Label, candidates: Sequence[object]) -> None:
    """A ranking names each of the item's candidate answers at most once (indices into the list)."""
    if not label.ranking:
        return
    if not candidates:
        raise ReviewError("this item has no candidate answers to rank (generate them first)", 400)
    if any(not 0 <= i < len(candidates) for i in label.ranking):
        raise ReviewError(f"ranking: every entry must be a candidate index in 0..{len(candidates) - 1}", 400)
    if len(set(label.ranking)) != len(label.ranking):
        raise ReviewError("ranking: a candidate appears twice", 400)


class Report(BaseModel):
    """The body of ``POST /v1/review/reports``: a user reports an answer."""

    model_config = ConfigDict(frozen=True)

    request_id: str = Field(min_length=1, description="The answer's request id (`railguard.request_id`)")
    reason: str = Field("", max_length=2_000, description="What is wrong with it")


Status = Literal["open", "adjudication", "done"]


@dataclass(frozen=True)
class Settlement:
    """What an item's labels make of it: still ``open``, ``done`` with the ``final`` label, or waiting
    for ``adjudication``."""

    status: Status
    final: Label | None = None


def settle(labels: Sequence[Label], labels_per_item: int) -> Settlement:
    """Enough labels that agree decide the item (with the first ideal answer and the first ranking of
    two or more candidates any of them wrote); enough that do not send it to an adjudicator."""
    if len(labels) < labels_per_item:
        return Settlement("open")
    if len({x.key() for x in labels}) == 1:
        answers = [x.ideal_answer for x in labels if x.ideal_answer]
        rankings = [x.ranking for x in labels if x.ranking and len(x.ranking) > 1]
        first_answer, first_ranking = answers[0] if answers else None, rankings[0] if rankings else None
        final = labels[0].model_copy(update={"ideal_answer": first_answer, "ranking": first_ranking})
        return Settlement("done", final)
    return Settlement("adjudication")
