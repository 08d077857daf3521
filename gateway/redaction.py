"""Replacing spans of text with placeholders such as `[PII]`."""

from __future__ import annotations

from collections.abc import Iterable


def redact_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """Replace each (start, end, label) span with `[LABEL]`; overlapping spans merge."""
    merged: list[tuple[int, int, str]] = []
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
