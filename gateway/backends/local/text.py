"""Token ids -> text deltas that are safe to show: whole characters, never the start of a stop
string.

`TextStream.push(token_id)` returns the text that became final with that token. Two things hold text
back: a trailing incomplete UTF-8 character (the tokenizer decodes it as U+FFFD until its last byte
arrives), and a tail that could still grow into one of the stop strings. When a stop string appears,
the text is cut before it and `stopped` becomes true; `finish()` releases what was held back.

Decoding uses a two-token window (as TGI and vLLM do) so that a tokenizer that drops a leading space
when decoding a lone token still yields the right text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["TextStream"]

_INCOMPLETE = "\ufffd"


class TextStream:
    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = tuple(s for s in stop if s)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._text = ""  # decoded so far, cut at a stop string once one is found
        self._sent = 0  # how much of `_text` has been returned
        self.stopped = False

    @property
    def text(self) -> str:
        return self._text

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that is now safe to release."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        delta = self._decode_delta(final=False)
        if delta:
            self._append(delta)
        return self._release(final=False)

    def finish(self) -> str:
        """The end of generation: release what is left (no stop string can complete now)."""
        if not self.stopped:
            delta = self._decode_delta(final=True)
            if delta:
                self._append(delta)
        return self._release(final=True)

    def _decode_delta(self, *, final: bool) -> str:
        before = self._decode(self._ids[self._prefix_offset : self._read_offset])
        after = self._decode(self._ids[self._prefix_offset :])
        if len(after) <= len(before) or (after.endswith(_INCOMPLETE) and not final):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return after[len(before) :]

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def _append(self, delta: str) -> None:
        start = max(0, len(self._text) - max((len(s) for s in self._stop), default=0))
        self._text += delta
        hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
        if hits:
            self._text = self._text[: min(hits)]
            self.stopped = True

    def _release(self, *, final: bool) -> str:
        end = len(self._text)
        if not final and not self.stopped:
            end -= self._held_back()
        end = max(end, self._sent)
        released = self._text[self._sent : end]
        self._sent = end
        return released

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self._text)), longest, -1):
                if self._text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
