"""Banned phrases, matched on text: the token that would complete a phrase is never allowed.

Banning a phrase's own token sequence is not enough: "forbidden fruit" can also come out as
" forbidden" + " fruits", or inside one long token. So at each step we look at the end of the text
generated so far (lower-cased): for every way it ends with the start of a phrase, the tokens that
begin with the rest are forbidden; tokens that contain a whole phrase are always forbidden. Token
texts are indexed once (sorted, so "tokens starting with x" is a binary search), and the sets per
phrase are built once per phrase list and cached by the caller.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from steering.vocabulary import TokenVocabulary

if TYPE_CHECKING:
    import torch

__all__ = ["BannedPhrases"]


class BannedPhrases:
    """A logits processor (stateless: one serves every row) for a fixed list of phrases."""

    def __init__(self, vocab: TokenVocabulary, phrases: Iterable[str]) -> None:
        self._texts = [(data or b"").decode("utf-8", errors="ignore").lower() for data in vocab.token_bytes]
        self.phrases = tuple(sorted({p.strip().lower() for p in phrases if p.strip()}))
        order = sorted((text, i) for i, text in enumerate(self._texts) if text)
        keys = [text for text, _ in order]
        always: set[int] = set()
        # (phrase head, ids of tokens starting with the phrase's rest) for every split point
        self._after: list[tuple[str, list[int]]] = []
        for phrase in self.phrases:
            always |= {i for i, text in enumerate(self._texts) if phrase in text}
            for split in range(1, len(phrase)):
                rest = phrase[split:]
                low = bisect.bisect_left(keys, rest)
                high = bisect.bisect_left(keys, rest + "\U0010ffff")
                if high > low:
                    self._after.append((phrase[:split], [i for _, i in order[low:high]]))
        self._always = sorted(always)
        self._tail = max((len(p) for p in self.phrases), default=0)

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if not self.phrases:
            return logits
        banned = list(self._always)
        tail = self._text_tail(generated)
        for head, ids in self._after:
            if tail.endswith(head):
                banned += ids
        if banned:
            logits[banned] = float("-inf")
        return logits

    def _text_tail(self, generated: Sequence[int]) -> str:
        parts: list[str] = []
        size = 0
        for token in reversed(generated):
            if token < len(self._texts):
                parts.append(self._texts[token])
                size += len(self._texts[token])
            if size >= self._tail:
                break
        return "".join(reversed(parts))
