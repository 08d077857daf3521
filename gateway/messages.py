"""The text of a conversation that the input guard reads, and where each piece of it came from.

Only what users and tools contributed is guarded (roles user, tool, function): system and developer
messages are the application's own, assistant turns were guarded when they were produced. A `Segment`
maps a stretch of the guarded text back to its message (and content part), so that a redaction of the
text can be applied to the messages (`gateway.redaction.redact_messages`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.protocol import ChatMessage

GUARDED_ROLES = frozenset({"user", "tool", "function"})
SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class Segment:
    message: int
    part: int | None
    start: int
    end: int


def guarded_text(messages: Sequence[ChatMessage]) -> tuple[str, list[Segment]]:
    texts: list[str] = []
    segments: list[Segment] = []
    offset = 0
    for i, message in enumerate(messages):
        if message.role not in GUARDED_ROLES:
            continue
        content = message.content
        if isinstance(content, str):
            pieces: list[tuple[int | None, str]] = [(None, content)]
        elif isinstance(content, list):
            pieces = [(j, part.text) for j, part in enumerate(content) if part.text is not None]
        else:
            continue
        for part, text in pieces:
            if texts:
                offset += len(SEPARATOR)
            texts.append(text)
            segments.append(Segment(i, part, offset, offset + len(text)))
            offset += len(text)
    return SEPARATOR.join(texts), segments
