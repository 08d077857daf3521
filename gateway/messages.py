"""The text of a conversation that the input guard reads, and redaction mapped back onto the messages.

Only what users and tools contributed is guarded (roles user, tool, function): system and developer
messages are the application's own, assistant turns were guarded when they were produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.guards.base import Verdict
from gateway.redaction import redact_spans

GUARDED_ROLES = frozenset({"user", "tool", "function"})
SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class Segment:
    message: int
    part: int | None
    start: int
    end: int


def guarded_text(messages: list[dict[str, Any]]) -> tuple[str, list[Segment]]:
    texts: list[str] = []
    segments: list[Segment] = []
    offset = 0
    for i, message in enumerate(messages):
        if message.get("role") not in GUARDED_ROLES:
            continue
        content = message.get("content")
        if isinstance(content, str):
            pieces: list[tuple[int | None, str]] = [(None, content)]
        elif isinstance(content, list):
            pieces = [
                (j, part["text"])
                for j, part in enumerate(content)
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
        else:
            continue
        for part, text in pieces:
            if texts:
                offset += len(SEPARATOR)
            texts.append(text)
            segments.append(Segment(i, part, offset, offset + len(text)))
            offset += len(text)
    return SEPARATOR.join(texts), segments


def redact_messages(
    messages: list[dict[str, Any]], segments: list[Segment], verdict: Verdict
) -> list[dict[str, Any]]:
    """A copy of the messages with the verdict's redacted categories replaced by placeholders."""
    redacted = [dict(m) for m in messages]
    for segment in segments:
        spans = [
            (
                max(f.span[0], segment.start) - segment.start,
                min(f.span[1], segment.end) - segment.start,
                f.category,
            )
            for f in verdict.findings
            if f.span is not None
            and f.category in verdict.categories
            and f.span[0] < segment.end
            and f.span[1] > segment.start
        ]
        if not spans:
            continue
        message = redacted[segment.message]
        if segment.part is None:
            message["content"] = redact_spans(message["content"], spans)
        else:
            parts = [dict(p) for p in message["content"]]
            parts[segment.part]["text"] = redact_spans(parts[segment.part]["text"], spans)
            message["content"] = parts
    return redacted
