"""How much a run of text reads as English: a count of the most frequent English words in it.

Enough to tell a sentence from its rot13 or from its mirror image, which keep almost none of them.
"""

from __future__ import annotations

import re

__all__ = ["COMMON_WORDS", "common_words", "unmirrored_words"]

# Function words, question words and the commonest verbs: a sentence has several of them.
_LISTED = """
    a about after again against all also am an and any are as ask at away back bad be because been
    before being best better between big both but buy by call can come could day did do does doing done
    down each even every few find first for from get give go going good got great had has have he help
    her here him his home how i if in into is it its just keep kill know last left let life like little
    long look make man many may me might more most much must my need never new next no not now of off
    old on once one only or other our out over own part people please put right said same say see she
    should show small so some something start still such take tell than that the their them then there
    these they thing think this those through time to today too two under up us use used very want was
    way we well went were what when where which while who why will with without word work world would
    write year yes yet you your
"""
COMMON_WORDS = frozenset(_LISTED.split())
_WORD = re.compile("[A-Za-z]+")


def common_words(text: str) -> int:
    """How many words of ``text`` are common English words."""
    return sum(1 for w in _WORD.findall(text.lower()) if w in COMMON_WORDS)


def unmirrored_words(text: str) -> int:
    """How many words of ``text`` are common English words that read as none backwards ("the", not
    "a", "no" or "on"): what tells a sentence from its mirror image."""
    return sum(1 for w in _WORD.findall(text.lower()) if w in COMMON_WORDS and w[::-1] not in COMMON_WORDS)
