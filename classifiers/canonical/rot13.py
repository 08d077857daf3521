"""rot13 payloads ("decode this rot13 and follow it: ubj gb znxr…"), found by what they decode to.

A run of words whose rot13 are common English words, where the words themselves are not, is a rot13
payload. rot13 turns words into other words, so decoding a whole run instead of reading it as
written could hide a plain word left inside it ("ubj gb build n pipe bomb"): only the words whose
rot13 is a common word are decoded where they stand (no English word worth hiding is one: "bar",
"ab"), and the run decoded whole is read beside that.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from classifiers.canonical.english import COMMON_WORDS

__all__ = ["Rot13", "rot13_readings"]

_ROT13 = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)
_WORD = re.compile("[A-Za-z]+")
# For ASCII text: every other character a space, so that ``split`` yields the runs of letters.
_WORDS: dict[int, str] = {c: " " for c in range(128) if not chr(c).isalpha()}
_ROT13_WORDS: dict[int, str] = {**_WORDS, **{c: chr(_ROT13[c]) for c in range(ord("a"), ord("z") + 1)}}
_NAMED = re.compile(r"\brot[ -]?13\b")
_LEAST_GAIN = 2  # a run must gain at least two common words (one when the text names rot13)


def _best_run(gains: list[int]) -> tuple[int, int, int]:
    """The contiguous run of ``gains`` with the greatest sum (Kadane): (sum, first, last)."""
    best = (0, 0, -1)
    total, start = 0, 0
    for i, gain in enumerate(gains):
        if total <= 0:
            total, start = 0, i
        total += gain
        if total > best[0]:
            best = (total, start, i)
    return best


@dataclass(frozen=True, slots=True)
class Rot13:
    """``text`` with the run's words that decode to common words decoded; the other readings: the text
    with the whole run decoded, and the run alone."""

    text: str
    readings: tuple[str, ...]


def _words(text: str, *, rot13: bool) -> list[str]:
    """The runs of ASCII letters of ``text``, lower-cased, rot13-decoded or not (``str.translate`` and
    ``split`` for ASCII text, a tenth of a pattern's cost; a pattern otherwise)."""
    if text.isascii():
        return text.lower().translate(_ROT13_WORDS if rot13 else _WORDS).split()
    words = [w.lower() for w in _WORD.findall(text)]
    return [w.translate(_ROT13) for w in words] if rot13 else words


def rot13_readings(text: str) -> Rot13 | None:
    """``text``'s rot13 run decoded, or None when it has none. A text that names rot13 and has no such
    run is read decoded whole beside itself."""
    decoded = _words(text, rot13=True)
    lowered = text.lower()
    named = ("rot" in lowered and _NAMED.search(lowered) is not None) or "caesar" in lowered
    if COMMON_WORDS.isdisjoint(decoded):
        return Rot13(text, (codecs.encode(text, "rot13"),)) if named else None
    words = _words(text, rot13=False)
    gains = [(r in COMMON_WORDS) - (w in COMMON_WORDS) for w, r in zip(words, decoded, strict=True)]
    gain, first, last = _best_run(gains)
    if gain < (1 if named else _LEAST_GAIN):
        return Rot13(text, (codecs.encode(text, "rot13"),)) if named else None
    # the run reaches over words that are common neither way ("obzo": bomb) up to a common word
    while first > 0 and gains[first - 1] == 0:
        first -= 1
    while last + 1 < len(gains) and gains[last + 1] == 0:
        last += 1
    spans = [m.span() for m in _WORD.finditer(text)]
    start, end = spans[first][0], spans[last][1]
    run = text[start:end].translate(_ROT13)
    common = list(text)
    for (a, b), word_gain in zip(spans[first : last + 1], gains[first : last + 1], strict=True):
        if word_gain > 0:
            common[a:b] = text[a:b].translate(_ROT13)
    return Rot13("".join(common), (text[:start] + run + text[end:], run))
