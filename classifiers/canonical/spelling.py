"""Words written so that they read as words to a person but not to a pattern or a tokenizer: spelled out
letter by letter ("b o m b", "b-o-m-b") and leetspeak ("h0w t0 m4k3 a b0mb").

Both are undone only where the text shows them: letters are joined only in runs of single letters,
and digits become letters only in texts that have a word with a digit between letters, and there
only inside words that mix letters and digits, so that "2024", "3.14" and "+44 20 7946 0958" stay.
"""

from __future__ import annotations

import re

from classifiers.canonical.english import COMMON_WORDS

__all__ = ["fold_leet", "join_spelled"]

_UNIT = r"[^\W_]"  # one letter or digit, of any script
_ALONE_BEFORE = r"(?<![^\W_])"
_ALONE_AFTER = r"(?![^\W_])"
# Words spelled out with single spaces and set apart by wider gaps: "h o w  t o  m a k e".
_SPACED_WORDS = re.compile(
    rf"{_ALONE_BEFORE}(?:{_UNIT} )*{_UNIT}(?: {{2,}}(?:{_UNIT} )*{_UNIT})+{_ALONE_AFTER}"
)
# One word spelled out with the same separator throughout: "b o m b", "b-o-m-b", "b.o.m.b", "b*o*m*b"
# (or twice throughout: "b--o--m--b", what is left of "b-\u200b-o-\u200b-m" once the invisible goes).
_SPELLED_WORD = re.compile(
    rf"{_ALONE_BEFORE}{_UNIT}(?P<sep>[ .\-_*+~|/·•])(?P<twice>(?P=sep)?){_UNIT}"
    rf"(?:(?P=sep)(?P=twice){_UNIT})+{_ALONE_AFTER}"
)
# What every spelled-out word has, as patterns that start with a rare character (cheap to search):
# two single units after a space, one between two other separators, or one between two wide gaps.
_SPACED_HINT = re.compile(rf" {_UNIT} {_UNIT}\b")
_SEPARATED_HINT = re.compile(rf"[.\-_*+~|/·•]{_UNIT}[.\-_*+~|/·•]")
_WIDE_HINT = re.compile(rf"  {_UNIT}  ")  # single units set wide apart: "b  o  m  b"
_WIDE_GAP = re.compile(" {2,}")
_SEPARATORS = re.compile(r"[ .\-_*+~|/·•]")


def _wordlike(units: str) -> bool:
    """Letters, not a number spelled out ("1.2.3", "+1-5-5"): at least two, and more than digits."""
    letters = sum(1 for c in units if c.isalpha())
    return letters >= 2 and 2 * letters > len(units)


def _join_words(match: re.Match[str]) -> str:
    words = [w.replace(" ", "") for w in _WIDE_GAP.split(match.group())]
    if len(words) >= 3 and max(len(w) for w in words) == 1:  # one word, its letters set wide apart
        joined = "".join(words)  # ("b  o  m  b": an invisible character between separators, removed)
        return joined if _wordlike(joined) else match.group()
    if max(len(w) for w in words) < 3 or not _wordlike("".join(words)):
        return match.group()
    return " ".join(words)


def _join_word(match: re.Match[str]) -> str:
    units = _SEPARATORS.sub("", match.group())
    if not _wordlike(units):
        return match.group()
    # "make a b o m b": a leading "a" or "I" is more likely the word before the spelled one
    if match.group("sep") == " " and len(units) >= 4 and units[0] in "aAI":
        return units[0] + " " + units[1:]
    return units


def join_spelled(text: str) -> str:
    """Words spelled letter by letter joined back into words."""
    if not (_SPACED_HINT.search(text) or _SEPARATED_HINT.search(text) or _WIDE_HINT.search(text)):
        return text
    return _SPELLED_WORD.sub(_join_word, _SPACED_WORDS.sub(_join_words, text))


_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
# Runs of leetspeak digits: between letters ("m4ke", "b0mb") they are what leetspeak does and ordinary
# writing does not. "@" is left out here, as e-mail addresses have it between letters.
_LEET_RUN = re.compile(r"[013457$]+")
_NUMBER = re.compile(r"((?<![A-Za-z0-9@$])[0-9@$]+(?![A-Za-z0-9@$]))")
_HEX = re.compile(r"[0-9A-Fa-f]{6,}")
# In a leetspeak text, a one- or two-digit "number" between two words is a word too ("build 4 pipe
# bomb", "bomb 70 hurt"), and so is one after an apostrophe ("neighbour'5").
_LEET_WORD = re.compile(
    r"(?<=[A-Za-z] )[013457]{1,2}(?= [A-Za-z]|[?!.,;:]+(?:\s|$)|$)|(?<=[A-Za-z]')[013457](?![0-9])"
)
_LEAST_COMMON = 2


def fold_leet(text: str) -> str:
    """Leetspeak as letters (0→o, 1→i, 3→e, 4→a, 5→s, 7→t, @→a, $→s) in every word that mixes letters
    and those characters, and in short numbers between words, when the text is leetspeak
    (``_leetspeak``); otherwise ``text`` unchanged."""
    if not _leetspeak(text):
        return text
    # numbers (runs of digits that touch no letter) stay; everything between them is translated
    pieces = _NUMBER.split(text)
    pieces[::2] = [p.replace("11", "ll").translate(_LEET) for p in pieces[::2]]
    return _LEET_WORD.sub(lambda m: m.group().translate(_LEET), "".join(pieces))


def _leetspeak(text: str) -> bool:
    """A digit between letters that is not part of a hex string (a hash, a colour), or two words with
    digits at an edge that fold into common words ("7h3", "t0"): "10am", "mp3" and "h264" do not."""
    common = 0
    for match in _LEET_RUN.finditer(text):
        start, end = match.span()
        before = start > 0 and _ascii_letter(text[start - 1])
        after = end < len(text) and _ascii_letter(text[end])
        if not (before or after):
            continue
        token = _around(text, start, end)
        if before and after and not _HEX.fullmatch(token):
            return True
        common += token.lower().translate(_LEET) in COMMON_WORDS
        if common >= _LEAST_COMMON:
            return True
    return False


def _ascii_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()


def _around(text: str, start: int, end: int) -> str:
    """The whole alphanumeric token around ``text[start:end]``."""
    while start and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return text[start:end]
