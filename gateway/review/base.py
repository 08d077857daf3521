"""The seam between the review service and where its state lives: `ReviewStore`.

Two stores implement it: `gateway.review.store.SqliteReviewStore` (the records' own SQLite file, the
default) and `gateway.review.redis_store.RedisReviewStore` (one Redis that every replica shares, when the
records go to a Redis Stream). Both keep the same promises: enqueueing is idempotent by request id, a
change and its audit event are written together or not at all, and an import writes every line or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from gateway.review.model import Label, Role


class ReviewStore(Protocol):
    labels_per_item: int
    gold_every: int

    # --- the queue (gateway.review.queue) ------------------------------------------------------

    def log_event(self, actor: str, event: str, request_id: str | None = None, **detail: Any) -> None:
        """An audit event that changes nothing else (a login, an export)."""

    def enqueue(
        self,
        record: dict[str, Any],
        *,
        reason: str,
        priority: int,
        actor: str = "intake",
        gold: Label | None = None,
    ) -> bool:
        """Add a record as an item; False when it is already queued (a redelivered record)."""

    def report(self, request_id: str, record: dict[str, Any] | None, *, actor: str, reason: str) -> None:
        """A user's report: the item enters at the top (or moves there when already queued)."""

    def entered_today(self, reason: str, category: str, language: str) -> int:
        """Items a rule let in today (UTC) in one category and language: its daily quota's use."""

    def cursor(self, name: str) -> str | None: ...

    def set_cursor(self, name: str, value: str) -> None: ...

    def next_item(self, reviewer: str) -> dict[str, Any] | None:
        """The next item for ``reviewer`` (a gold one every ``gold_every``-th time), or None."""

    def item(self, request_id: str, *, reveal: bool = True) -> dict[str, Any]:
        """An item as the API shows it; ``reveal=False`` hides the gold answer and the others' labels."""

    def label(self, reviewer: str, request_id: str, label: Label) -> dict[str, Any]:
        """Record a label; the item is decided, disputed, or stays open."""

    def set_candidates(
        self, actor: str, request_id: str, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Keep an item's candidate answers, once (the first reviewer's win); the item's candidates."""

    def disputed(self) -> list[dict[str, Any]]:
        """Items waiting for an adjudicator, most urgent first."""

    def adjudicate(self, adjudicator: str, request_id: str, decision: Label) -> dict[str, Any]:
        """The final decision of a disputed item (it needs a reason)."""

    def role_overrides(self) -> dict[str, Role]: ...

    def set_role(self, admin: str, reviewer: str, role: Role) -> None: ...

    def audit(self, request_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Audit events, newest first."""

    def stats(self) -> dict[str, Any]:
        """Queue counts and agreement (:func:`gateway.review.agreement.summarise`)."""

    def backlog(self) -> int:
        """Items not yet decided (gold items aside)."""

    def close(self) -> None:
        """Release connections."""

    # --- the edges (gateway.review.store) ------------------------------------------------------

    def export(self, *, include_ai: bool = False) -> Iterator[dict[str, Any]]:
        """Decided items, oldest first (with ``include_ai``, also those only an AI labelled)."""

    def needs_ai_label(self, limit: int) -> list[dict[str, Any]]:
        """Open items that no person and no AI has labelled, most urgent first."""

    def add_ai_label(
        self,
        request_id: str,
        label: Label,
        provenance: dict[str, Any],
        *,
        rejected_answer: str | None = None,
        spot_check: bool = False,
    ) -> None:
        """Keep an AI's label beside the item, which stays open for people."""

    def ai_label(self, request_id: str) -> dict[str, Any] | None:
        """The AI's label as a final decision, or None."""

    def import_lines(self, lines: Iterable[str], *, actor: str) -> dict[str, int]:
        """JSONL labels and gold items, all checked first, all written or none."""
