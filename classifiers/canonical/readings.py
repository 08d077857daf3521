"""The readings of a text that a guard scores: what a person or a model understands from it, however it
was dressed.

``canonical`` undoes the dressing that keeps the words (invisible characters, bidi overrides,
compatibility forms, decorative accents, look-alike letters, spelled-out words, leetspeak). ``views``
adds what hides the words: payloads decoded (base64, hex, URL and HTML escapes in place; rot13 runs
word by word in place, and whole beside that), and, where a bidi override was reversed, the text in
stored order too. A guard flags a text
when any of its views is flagged; the model is always sent the text as written.
"""

from __future__ import annotations

from classifiers.canonical.display import clean, reversed_runs
from classifiers.canonical.english import unmirrored_words
from classifiers.canonical.letters import fold_confusables, strip_marks
from classifiers.canonical.payloads import decode_in_place
from classifiers.canonical.rot13 import rot13_readings
from classifiers.canonical.spelling import fold_leet, join_spelled

__all__ = ["MOST_VIEWS", "canonical", "views"]

MOST_VIEWS = 6  # bounds the guard's cost for a text stuffed with payloads
_DEPTH = 2  # a payload inside a payload is decoded too; deeper nesting is read as it stands


def canonical(text: str) -> str:
    """``text`` as a reader understands it, with its encoded payloads left as they are."""
    return _understood(clean(text))


def _understood(cleaned: str) -> str:
    return fold_leet(fold_confusables(join_spelled(strip_marks(cleaned))))


def views(text: str) -> tuple[str, ...]:
    """The distinct readings of ``text`` to score, the main one first (its canonical form with payloads
    decoded in place): at most ``MOST_VIEWS``. For plain text, just ``(text,)``."""
    found: dict[str, None] = {}
    _read(text, found, _DEPTH)
    return tuple(found)[:MOST_VIEWS]


def _displayed(text: str) -> list[str]:
    """``text`` cleaned, with right-to-left runs reversed back; and in stored order too, which is what
    the model is sent, unless each run reads as mirrored English there: no common word that stays
    one only one way round ("the", not "no"), while reversed it has two. (The rule guard reads the
    text as sent as well.)"""
    cleaned = clean(text)
    runs = reversed_runs(text)
    if not runs:
        return [cleaned]
    if all(unmirrored_words(r) == 0 and unmirrored_words(r[::-1]) >= 2 for r in runs):
        return [cleaned]
    return [cleaned, clean(text, reverse_bidi=False)]


def _read(text: str, found: dict[str, None], depth: int) -> None:
    for reading in _displayed(text):
        decoded = decode_in_place(reading)
        main = _understood(reading) if decoded.text == reading else canonical(decoded.text)
        rot13 = rot13_readings(main)
        found.setdefault(main if rot13 is None else canonical(rot13.text))
        for payload in decoded.payloads:
            if depth > 1:
                _read(payload, found, depth - 1)
            else:
                found.setdefault(canonical(payload))
        for rot13_reading in rot13.readings if rot13 is not None else ():
            found.setdefault(canonical(rot13_reading))
        if len(found) >= MOST_VIEWS:
            return
