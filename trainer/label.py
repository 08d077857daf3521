"""`railguard label`: AI labels for flagged items no person has labelled, by constitution-guided critique
and revision (Bai et al., 2022, "Constitutional AI").

The policy's written principles are the constitution. For each item, most urgent first:

1. the *answerer* (the model in service, with no guard) answers the prompt: what the model says on its
   own, which the gateway never stores;
2. the *teacher* (the same local model, or any OpenAI-compatible endpoint) critiques that answer against
   the principle the policy cites for the item's category;
3. the teacher revises the answer to follow the principle.

The label's action is the guard's decision (refuse for a refused or escalated record, allow otherwise):
the AI drafts answers, people decide verdicts, and every AI-labelled item stays in the review queue.
A revision is checked before it is kept: for a refusal, a revision that does not read as one (the
refusal detector) is replaced by the policy's own refusal in the user's language; for an allowed item, a
revision that refuses is not a label at all. The model's first answer becomes the rejected side of a
DPO pair when it differs from the chosen one. Every label records its provenance: teacher, answerer,
prompt version, policy version and the principle, so an audit can tell AI labels from people's.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.policy.engine import PolicyEngine
from gateway.policy.verdict import Action
from gateway.review.model import Label
from gateway.review.store import ReviewStore

__all__ = ["PROMPT_VERSION", "ChatModel", "Drafted", "OpenAIChat", "draft", "label_queue"]

log = logging.getLogger("railguard.label")

PROMPT_VERSION = "cai-v1"
CRITIQUE = (
    "A user asked an AI assistant:\n\n{prompt}\n\nThe assistant answered:\n\n{answer}\n\n"
    "Principle: {principle}\n\n"
    "Critique the answer against the principle in two or three sentences: where does it break the "
    "principle, or refuse something the principle allows?"
)
REVISION = (
    "A user asked an AI assistant:\n\n{prompt}\n\nThe assistant answered:\n\n{answer}\n\n"
    "Critique of that answer: {critique}\n\n"
    "Write a new answer that follows this principle: {principle}\n{goal}\n"
    "Reply with the new answer only, in the language of the user's request."
)
GOALS = {
    "refuse": "Decline briefly and politely, say which principle it conflicts with, and offer a safe, "
    "helpful alternative.",
    "allow": "The request is acceptable: answer it helpfully and correctly, without refusing.",
}


class ChatModel(Protocol):
    """One chat completion at temperature 0; ``name`` goes into every label's provenance."""

    name: str

    def complete(self, messages: list[dict[str, str]], max_tokens: int) -> str: ...


class OpenAIChat:
    """Any OpenAI-compatible endpoint (a railguard gateway with its guard off, vLLM, a hosted API)."""

    def __init__(self, base_url: str, model: str, api_key: str = "unused", timeout_s: float = 300) -> None:
        import openai

        self.name = model
        self.base_url = base_url
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=2)

    def complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        reply = self._client.chat.completions.create(
            model=self.name,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=max_tokens,
        )
        return (reply.choices[0].message.content or "").strip()

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Drafted:
    label: Label
    provenance: dict[str, Any]
    rejected_answer: str | None


def _prompt_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"role": m["role"], "content": m["content"]}
        for m in record.get("prompt") or []
        if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
    ]


def _principle(engine: PolicyEngine, category: str) -> tuple[str, str]:
    policy = engine.policy
    chosen = policy.categories.get(category)
    name = (chosen.principle if chosen else None) or policy.default_principle
    # the prompts to the teacher are English, so the principle is cited in the policy's default language
    return name, policy.principles[name].text_in(policy.default_language, policy.default_language)


def draft(
    item: dict[str, Any],
    *,
    teacher: ChatModel,
    answerer: ChatModel,
    engine: PolicyEngine,
    max_tokens: int = 200,
) -> Drafted | None:
    """The AI label of one review item, or None when there is nothing to learn from it."""
    from classifiers.refusals import is_refusal

    record = item["record"]
    messages = _prompt_messages(record)
    if not messages or messages[-1]["role"] != "user":
        return None
    action = "refuse" if record.get("action") in ("refuse", "escalate") else "allow"
    category = next(iter(record.get("categories") or []), "none")
    language = record.get("language") or engine.policy.default_language
    principle_id, principle = _principle(engine, category)
    answer = answerer.complete(messages, max_tokens)
    prompt = messages[-1]["content"]
    critique = teacher.complete(
        [{"role": "user", "content": CRITIQUE.format(prompt=prompt, answer=answer, principle=principle)}],
        max_tokens,
    )
    revision = teacher.complete(
        [{"role": "user", "content": REVISION.format(
            prompt=prompt, answer=answer, critique=critique, principle=principle, goal=GOALS[action]
        )}],
        max_tokens,
    )  # fmt: skip
    kept = "revision"
    if action == "refuse" and not is_refusal(revision):
        message = engine.resolve(record.get("tenant") or "default", language).message(
            Action.REFUSE, principle_id, str(record.get("request_id", ""))
        )
        revision, kept = message or revision, "policy refusal (the revision did not refuse)"
    elif action == "allow" and (not revision or is_refusal(revision)):
        return None
    provenance = {
        "teacher": teacher.name,
        "answerer": answerer.name,
        "prompt_version": PROMPT_VERSION,
        "policy_version": engine.version,
        "principle": principle_id,
        "critique": critique,
        "chosen_from": kept,
        "action_from": "the guard's decision",
    }
    label = Label(action=Action(action), category=_category(category), ideal_answer=revision[:20_000])
    return Drafted(label, provenance, answer if answer.strip() and answer != revision else None)


def _category(category: str) -> str:
    cleaned = "".join(c for c in category.lower() if c.isalnum() or c in "_/-")[:64]
    return cleaned or "none"


def spot_checked(request_id: str, rate: float) -> bool:
    """A stable sample of ``rate`` of the items (by request id), sent to people to check the AI."""
    point = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") / 2**64
    return point < rate


def label_queue(
    store: ReviewStore,
    *,
    teacher: ChatModel,
    answerer: ChatModel,
    engine: PolicyEngine,
    limit: int,
    spot_check: float = 0.0,
    max_tokens: int = 200,
    min_score: float = 0.0,
    concurrency: int = 4,
) -> dict[str, int]:
    """AI labels for up to ``limit`` open items no one has labelled; counts of what happened. An item
    whose highest guard score is below ``min_score`` (the guard was unsure: an over-refusal as likely as
    a catch) is left to people, since the label's action is the guard's decision. ``concurrency`` items
    are drafted at once (a local gateway batches their generations)."""
    from concurrent.futures import ThreadPoolExecutor

    from gateway.review.intake import max_score

    counts: Counter[str] = Counter()
    lock = threading.Lock()
    items = []
    for item in store.needs_ai_label(limit):
        if max_score(item["record"]) < min_score:
            counts["left to people (guard unsure)"] += 1
        else:
            items.append(item)

    def one(item: dict[str, Any]) -> None:
        try:
            drafted = draft(item, teacher=teacher, answerer=answerer, engine=engine, max_tokens=max_tokens)
        except Exception as exc:  # a teacher that fails on one item: noted, the others go on
            log.warning("no AI label for %s: %s", item["request_id"], exc)
            with lock:
                counts["failed"] += 1
            return
        if drafted is None:
            with lock:
                counts["nothing to learn"] += 1
            return
        check = spot_checked(item["request_id"], spot_check)
        store.add_ai_label(
            item["request_id"],
            drafted.label,
            drafted.provenance,
            rejected_answer=drafted.rejected_answer,
            spot_check=check,
        )
        with lock:
            counts["labelled"] += 1
            counts["spot checks"] += check

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, items))
    return dict(counts)
