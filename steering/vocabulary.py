"""A tokenizer's tokens as the bytes they decode to, for outlines-core.

outlines 1.3's own conversion doubles the leading space of SentencePiece tokens (`▁x`), which breaks
every regex with a literal space; we map tokens to bytes ourselves: byte-fallback tokens (`<0x0A>`)
are their byte, `▁` is a space, and byte-level BPE (GPT-2 style) tokens go through its byte table.
Special tokens get no bytes: a constraint can never produce them (stop tokens are allowed
separately, once the constraint is complete).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = ["TokenVocabulary"]

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@cache
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's reversible map between bytes and printable characters, reversed."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


@dataclass(frozen=True)
class TokenVocabulary:
    """`token_bytes[i]`: what token `i` adds to the text (None: never allowed by a constraint)."""

    token_bytes: tuple[bytes | None, ...]
    stop_ids: frozenset[int]
    single_byte: dict[int, int]  # byte -> the token that is exactly that byte (text token preferred)
    logits_size: int  # the model's output width (may exceed the tokenizer's length)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, stop_ids: frozenset[int], logits_size: int) -> TokenVocabulary:
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        byte_level = type(decoder).__name__ == "ByteLevel" or "ByteLevel" in str(decoder)
        special = set(tokenizer.all_special_ids)
        special |= {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        table: list[bytes | None] = [None] * max(len(tokenizer), logits_size)
        single: dict[int, int] = {}
        fallback: dict[int, int] = {}
        for token, index in tokenizer.get_vocab().items():
            if index in special or index >= len(table):
                continue
            data = _token_bytes(token, byte_level)
            if not data:
                continue
            table[index] = data
            if len(data) == 1:
                is_fallback = _BYTE_FALLBACK.match(token) is not None
                target = fallback if is_fallback else single
                target.setdefault(data[0], index)
        return cls(tuple(table), stop_ids, {**fallback, **single}, logits_size)

    def outlines(self, eos_id: int) -> Any:
        """An `outlines_core.Vocabulary` of every token that has bytes."""
        from outlines_core import Vocabulary

        grouped: dict[bytes, list[int]] = {}
        for index, data in enumerate(self.token_bytes):
            if data is not None and index != eos_id:
                grouped.setdefault(data, []).append(index)
        return Vocabulary(eos_id, grouped)


def _token_bytes(token: str, byte_level: bool) -> bytes:
    if byte_level:
        table = _byte_level_decoder()
        if all(c in table for c in token):
            return bytes(table[c] for c in token)
        return token.encode("utf-8")
    match = _BYTE_FALLBACK.match(token)
    if match:
        return bytes([int(match.group(1), 16)])
    return token.replace("\u2581", " ").encode("utf-8")
