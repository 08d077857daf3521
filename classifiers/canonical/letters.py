"""Letters dressed to fool a pattern: accents piled on as decoration, and look-alike letters of other
scripts ("bоmb" with a Cyrillic о) standing in for Latin ones inside Latin words.

Both are undone only where the text shows them, so that ordinary text in any language passes as it
is: a French accent is kept, a Russian or Greek word is never folded into Latin. The look-alikes come
from Unicode's confusables data (``confusable_homoglyphs``), read once at import.

Distinct characters are looked up in sets and counted with ``str.count`` rather than matched with
large character classes, which Python's ``re`` tries at every position: a 2 KB text costs tens of
microseconds, not hundreds.
"""

from __future__ import annotations

import re
import string
import unicodedata

from confusable_homoglyphs import confusables  # type: ignore[import-untyped]

__all__ = ["SKELETON", "fold_confusables", "strip_marks"]


def _latin_skeleton() -> dict[int, str]:
    """Each character that the confusables data says looks like one ASCII letter, and that NFKC does
    not already fold (it folds fullwidth and mathematical letters), mapped to that letter. The data
    reads "I" as "l" (they look alike), so a capital that looks like "l" (Cyrillic "І", Greek "Ι") is an
    "I": "KІLL" is "KILL", not "KlLL"."""
    table: dict[int, str] = {}
    for char, glyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii() or unicodedata.normalize("NFKC", char) != char:
            continue
        letters = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalpha()]
        if letters:
            table[ord(char)] = "I" if letters[0] == "l" and char.isupper() else letters[0]
    return table


SKELETON = _latin_skeleton()
_LOOKALIKES = frozenset(chr(cp) for cp in SKELETON)
_WORD = re.compile(r"(?:[^\W_]|[@$])+")  # with digits, "@" and "$": "а0b" passes for Latin whole
_ASCII_RUN = re.compile("[A-Za-z]+")
# What counts towards a text's letters: digits, "@" and "$" too, which leetspeak turns into letters
# later, so that the text's verdict does not change when it does.
_NOT_COUNTED = bytes(b for b in range(128) if not (chr(b).isalnum() or chr(b) in "@$"))
_NOT_LETTER = bytes(b for b in range(128) if chr(b) not in string.ascii_letters)
_FOREIGN_SHARE = 10  # a text is Latin when fewer than one in ten of its letters cannot pass for Latin

# Combining marks that decorate Latin, Greek and Cyrillic letters; other scripts' own vowel signs and
# points (Devanagari, Arabic, Hebrew, Thai) live elsewhere and are never touched.
MARK_CLASS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_MARKS = re.compile(f"[{MARK_CLASS}]")
_MARK_ON_LATIN = re.compile(f"[{MARK_CLASS}](?<=[A-Za-z].)")
# Above this share of accented Latin letters the accents are decoration ("hów tö mákë"), not a
# language's spelling (French, German, Spanish: a few per cent, a quarter in a short "café crème à
# Noël"; Vietnamese, which can pass it, only gets read unaccented).
_MARKED_SHARE = 0.34


def _ascii_count(text: str, ignored: bytes) -> int:
    """How many ASCII characters of ``text`` are not among ``ignored`` (bytes operations: fast)."""
    return len(text.encode("ascii", "ignore").translate(None, ignored))


def strip_marks(text: str) -> str:
    """Without combining accents when they are decoration: stacked or unattached ones left after NFKC
    composition ("Zalgo" text), or on more than ``_MARKED_SHARE`` of the Latin letters."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    if not _MARKS.search(text):
        if decomposed == text:
            return text
        marked = sum(1 for _ in _MARK_ON_LATIN.finditer(decomposed))
        if not marked or marked <= _MARKED_SHARE * _ascii_count(decomposed, _NOT_LETTER):
            return text
    return unicodedata.normalize("NFC", _MARKS.sub("", decomposed))


def _mostly_latin(text: str, chars: set[str], foreign: set[str]) -> bool:
    """Whether letters that cannot pass for Latin are rare (a Russian text is mostly them)."""
    count = 0
    for char in foreign:  # stops as soon as they are too many for any count of the others
        count += text.count(char)
        if count * _FOREIGN_SHARE >= len(text):
            return False
    others = [c for c in chars if not c.isascii() and c.isalnum()]
    return count * _FOREIGN_SHARE < _ascii_count(text, _NOT_COUNTED) + sum(text.count(c) for c in others)


def fold_confusables(text: str) -> str:
    """Look-alike letters as the Latin letters they imitate, in the words where they pass for Latin: a
    word that mixes them with ASCII letters or digits, or a word made only of them in a text that is
    mostly Latin. A word of a genuinely Cyrillic or Greek text stays as it is."""
    if text.isascii():
        return text
    chars = set(text)
    if _LOOKALIKES.isdisjoint(chars):
        return text
    foreign = {c for c in chars if c.isalpha() and not c.isascii() and c not in _LOOKALIKES}
    if not foreign:  # nothing but ASCII and look-alikes: every word passes for Latin
        return text.translate(SKELETON)
    if _mostly_latin(text, chars, foreign):
        return _WORD.sub(lambda m: _fold_word(m.group(), alone=True), text)
    return _fold_mixed(text)


def _fold_word(word: str, *, alone: bool) -> str:
    """``word`` folded if it mixes look-alikes with ASCII, or (``alone``) is made only of them."""
    if word.isascii() or _LOOKALIKES.isdisjoint(word):
        return word
    folded = word.translate(SKELETON)
    if (alone and folded.isascii()) or any(c.isascii() for c in word):
        return folded
    return word


def _fold_mixed(text: str) -> str:
    """The words of a non-Latin text that mix look-alikes with ASCII letters, folded (found from their
    ASCII letters, which such a text has few of)."""
    parts: list[str] = []
    last = 0
    for match in _ASCII_RUN.finditer(text):
        start, end = match.span()
        if start < last:
            continue
        while start and (text[start - 1].isalnum() or text[start - 1] in "@$"):
            start -= 1
        while end < len(text) and (text[end].isalnum() or text[end] in "@$"):
            end += 1
        parts += [text[last:start], _fold_word(text[start:end], alone=False)]
        last = end
    return "".join(parts) + text[last:] if parts else text
