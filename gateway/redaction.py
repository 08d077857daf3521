"""Redaction, in one place: spans of text replaced by placeholders such as `[PII]`.

A redacting verdict names the spans (`verdict_spans`); `redact_text` rewrites an answer, `redact_messages`
the prompt's messages through the segments of its guarded text (`gateway.messages`), and the streaming
guard the text it holds back. `deidentify_messages` is the stores' kind: every PII span found in a
record's prompt, whatever the verdict (`DecisionRecord.deidentified`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gateway.messages import Segment
from gateway.policy.verdict import Verdict

__all__ = ["deidentify_messages", "redact_messages", "redact_spans", "redact_text", "verdict_spans"]

Span = tuple[int, int, str]


def redact_spans(text: str, spans: Iterable[Span]) -> str:
    """Replace each (start, end, label) span with `[LABEL]`; overlapping spans merge."""
    merged: list[Span] = []
    for start, end, label in sorted(spans):
        if merged and start < merged[-1][1]:
            first, last, first_label = merged[-1]
            merged[-1] = (first, max(last, end), first_label)
        else:
            merged.append((start, end, label))
    out, cursor = [], 0
    for start, end, label in merged:
        out += [text[cursor:start], f"[{label.upper()}]"]
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def verdict_spans(verdict: Verdict) -> list[Span]:
    """The spans a redacting verdict rewrites: its findings' spans in the categories it acts on."""
    return [
        (*f.span, f.category)
        for f in verdict.findings
        if f.span is not None and f.category in verdict.categories
    ]


def redact_text(text: str, verdict: Verdict) -> str:
    return redact_spans(text, verdict_spans(verdict))


def redact_messages(
    messages: list[dict[str, Any]], segments: list[Segment], verdict: Verdict
) -> list[dict[str, Any]]:
    """A copy of the messages with the verdict's redacted categories replaced by placeholders."""
    redacted = [dict(m) for m in messages]
    spans = verdict_spans(verdict)
    for segment in segments:
        inside = [
            (max(start, segment.start) - segment.start, min(end, segment.end) - segment.start, category)
            for start, end, category in spans
            if start < segment.end and end > segment.start
        ]
        if not inside:
            continue
        message = redacted[segment.message]
        if segment.part is None:
            message["content"] = redact_spans(message["content"], inside)
        else:
            parts = [dict(p) for p in message["content"]]
            parts[segment.part]["text"] = redact_spans(parts[segment.part]["text"], inside)
            message["content"] = parts
    return redacted


def deidentify_messages(messages: list[dict[str, Any]], redact: Callable[[str], str]) -> list[dict[str, Any]]:
    """Each message's text through ``redact`` (`classifiers.pii.redact`); parts that are not text are
    kept by their type only."""
    return [_deidentify(m, redact) for m in messages]


def _deidentify(message: dict[str, Any], redact: Callable[[str], str]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": redact(content)}
    if isinstance(content, list):  # content parts: the text ones are redacted, others kept by type only
        parts = [
            {**p, "text": redact(p["text"])}
            if isinstance(p, dict) and isinstance(p.get("text"), str)
            else {"type": p.get("type")}
            if isinstance(p, dict)
            else p
            for p in content
        ]
        return {**message, "content": parts}
    return message
