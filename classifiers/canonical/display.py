"""What a string of code points displays: right-to-left runs put back in reading order, invisible
characters gone, tag characters as the ASCII they shadow, compatibility forms folded by NFKC.

Nothing here changes what a reader sees, so a text as displayed can stand in for the text as stored
(``readings.py`` keeps the stored order beside it where a reversed run could read either way).
"""

from __future__ import annotations

import re
import unicodedata

from classifiers.canonical.letters import MARK_CLASS, SKELETON

__all__ = ["clean", "reversed_runs"]


def _chars(*ranges: tuple[int, int]) -> frozenset[str]:
    return frozenset(chr(cp) for first, last in ranges for cp in range(first, last + 1))


# Format characters (Unicode category Cf) that are never needed to read a text: zero-width spaces, word
# joiners, soft hyphens, bidi embeddings and overrides, invisible operators, the BOM, interlinear
# annotations and the like; plus control characters (Cc) other than tab and line breaks, the
# combining grapheme joiner and the Hangul fillers, which render as nothing.
_INVISIBLE = _chars(
    (0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x34F, 0x34F),
    (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2),
    (0x115F, 0x1160), (0x180E, 0x180E), (0x200B, 0x200B), (0x200E, 0x200F), (0x202A, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0x3164, 0x3164), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE007F, 0xE007F),
)  # fmt: skip
# Joiners and variation selectors shape emoji and the scripts that need them (a Persian ZWNJ, a ZWJ
# family emoji): they go only where they sit beside a Latin-like character, as obfuscation puts them.
_JOINING = _chars((0x200C, 0x200D), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
# Tag characters (U+E0020..E007E) are invisible, but language models read them as the ASCII they
# shadow ("ASCII smuggling"): the guard reads them that way too.
_TAG_CHARS = _chars((0xE0020, 0xE007E))
_TAGS = {ord(c): ord(c) - 0xE0000 for c in _TAG_CHARS}
_NOT_PLAIN = _INVISIBLE | _JOINING | _TAG_CHARS

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INVISIBLE_RUN = re.compile(
    "[" + "".join(sorted(_INVISIBLE)).replace("\\", "\\\\").replace("-", "\\-") + "]+"
)
_JOINERS = re.compile("[\u200c\u200d\ufe00-\ufe0f\U000e0100-\U000e01ef]+")
_TAG_RUN = re.compile("[\U000e0020-\U000e007e]+")
# An override (RLO ... PDF) or an isolate (RLI ... PDI) lays its run out right to left: text stored
# reversed is displayed, and read, the right way round.
_REVERSED_RUN = re.compile("[\u202e\u2067]([^\u202a-\u202e\u2066-\u2069\n]*)(?:[\u202c\u2069]|(?=\n)|$)")
_MARK = re.compile(f"[{MARK_CLASS}]")


def _latin_like(char: str) -> bool:
    """Whether ``char`` is, or may become, a Latin letter or digit (a decorative mark goes too)."""
    base = unicodedata.normalize("NFKD", char)[:1]
    if base.isascii():
        return base.isalnum() or base in "@$"  # leetspeak turns "@" and "$" into letters
    return ord(base) in SKELETON or 0xC0 <= ord(base) <= 0x24F or bool(_MARK.match(base))


def _drop_joiners(match: re.Match[str]) -> str:
    """A joiner beside a Latin-like character goes, and so does one that joins nothing (between spaces
    or punctuation: "b \u200d o", "b.\u200c.o"); one beside an emoji or a letter of a script that
    shapes with it stays."""
    text, start, end = match.string, match.start(), match.end()
    neighbours = [c for c in (text[start - 1] if start else "", text[end] if end < len(text) else "") if c]
    if any(_latin_like(c) for c in neighbours):
        return ""
    shaped = any(unicodedata.category(c) in _SHAPED for c in neighbours)
    return match.group() if shaped else ""


# What a joiner or a variation selector may shape: letters and marks of other scripts, emoji and symbols.
_SHAPED = frozenset({"Lo", "Lm", "Mn", "Mc", "Me", "So", "Sk"})


def reversed_runs(text: str) -> list[str]:
    """The runs of ``text`` that an override or isolate lays out right to left, in stored order."""
    return _REVERSED_RUN.findall(text) if "\u202e" in text or "\u2067" in text else []


def clean(text: str, *, reverse_bidi: bool = True) -> str:
    """``text`` as displayed: right-to-left runs reversed back (unless ``reverse_bidi`` is off: the
    code points in stored order), tag characters as the ASCII they shadow, invisible and control
    characters removed, then NFKC."""
    if text.isascii():
        return _CONTROL.sub("", text)
    if not _NOT_PLAIN.isdisjoint(text):
        if reverse_bidi and ("\u202e" in text or "\u2067" in text):
            text = _REVERSED_RUN.sub(lambda m: m.group(1)[::-1], text)
        if not _TAG_CHARS.isdisjoint(text):
            text = _TAG_RUN.sub(lambda m: m.group().translate(_TAGS), text)
        text = _JOINERS.sub(_drop_joiners, _INVISIBLE_RUN.sub("", text))
    return unicodedata.normalize("NFKC", text)
