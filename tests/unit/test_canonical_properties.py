"""Property tests of the canonicaliser (`classifiers.canonical`), the reading every guard scores.

What it promises, whatever the text: it never raises, its readings stay within a bounded size of the
text, and each reading is already canonical (canonicalising it again changes nothing). What it undoes
comes back plain: invisible characters and NULs inserted anywhere in a word, look-alike letters of
other scripts, words spelled out letter by letter, and base64, hex, URL-escaped and rot13 payloads.
"""

from __future__ import annotations

import base64
import codecs
import string
import unicodedata

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from classifiers.canonical import MOST_VIEWS, canonical, views
from classifiers.evaluation.obfuscate import OBFUSCATIONS

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# NFKC's largest expansion of one code point (U+FDFA, an Arabic ligature, becomes 18 characters); no
# other step lengthens a text, and decoding a payload shortens it.
MOST_GROWTH = 18

# Any text a client can send (JSON strings cannot carry lone surrogates), with more control and
# format characters than uniform sampling gives, and long runs of one character or one short piece.
ANY_CHAR = st.characters(exclude_categories=["Cs"])
HOSTILE_CHAR = ANY_CHAR | st.sampled_from(
    "\x00\x01\x1b\x7f\x85\u00ad\u200b\u200d\u202e\u2067\u2069\ufeff\U000e0041"
)
RUN = st.builds(
    lambda piece, n: piece * n, st.text(HOSTILE_CHAR, min_size=1, max_size=4), st.integers(50, 2000)
)
TEXT = st.lists(st.text(HOSTILE_CHAR, max_size=30) | RUN, max_size=4).map("".join)

# Invisible in a word: zero-width space, non-joiner, joiner, word joiner, BOM, soft hyphen, invisible
# operators, the Mongolian vowel separator; bidi marks, embeddings and isolates that do not reverse
# Latin letters (an override, U+202E, does: it has its own tests); NUL and other C0/C1 controls.
FORMAT = (
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\u2061\u2062\u2063\u2064\u180e"
    "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u2066\u2068\u2069"
)
CONTROL = "\x00\x01\x08\x0b\x0c\x1b\x1f\x7f\x80\x9f"
ASCII_WORD = st.text(string.ascii_letters, min_size=1, max_size=12)

# Cyrillic and Greek letters that attackers put in place of Latin ones.
LOOKALIKES: dict[str, str] = {
    "a": "а", "c": "с", "d": "ԁ", "e": "е", "h": "һ", "i": "і", "j": "ј", "o": "оο", "p": "р", "q": "ԛ",
    "s": "ѕ", "v": "ν", "w": "ԝ", "x": "х", "y": "у",
    "A": "АΑ", "B": "ВΒ", "C": "С", "E": "ЕΕ", "H": "НΗ", "I": "ІΙӀ", "J": "Ј", "K": "КΚ", "M": "МΜ",
    "N": "Ν", "O": "ОΟ", "P": "РΡ", "S": "Ѕ", "T": "ТΤ", "X": "ХΧ", "Y": "Υ", "Z": "Ζ",
}  # fmt: skip

# Sentences of common English words and the nouns a guard looks for (no word's rot13 is a common word),
# that hold a word of three letters or more and are long enough to be taken for a payload when encoded
# (base64 of 9 bytes: `payloads._SHORTEST_RUN` and `payloads._readable`).
WORDS = [
    "how", "to", "make", "a", "the", "bomb", "kill", "poison", "at", "home", "with", "your", "people",
    "weapon", "build", "gun", "hurt", "step", "by", "instructions", "for", "my", "neighbour", "sarin",
]  # fmt: skip
SENTENCE = (
    st.lists(st.sampled_from(WORDS), min_size=3, max_size=10)
    .filter(lambda words: max(len(w) for w in words) >= 3)
    .map(" ".join)
    .filter(lambda sentence: len(sentence) >= 9)
)


@SETTINGS
@given(TEXT)
@example("\ufdfa" * 3)  # NFKC's largest expansion
@example("b o m b " * 500)
@example("&#xFDFA;&#65;&#66;&#67;")  # an escaped ligature: decoding shortens, NFKC then lengthens
def test_never_raises_and_stays_bounded(text: str) -> None:
    once = canonical(text)
    readings = views(text)
    assert isinstance(once, str)
    assert len(once) <= MOST_GROWTH * len(text)
    assert 1 <= len(readings) <= MOST_VIEWS
    assert all(len(r) <= MOST_GROWTH * len(text) for r in readings)
    if text.isascii():  # nothing in canonical lengthens ASCII text (payloads are views' business)
        assert len(once) <= len(text)


@SETTINGS
@given(TEXT)
def test_each_reading_is_already_canonical(text: str) -> None:
    """``canonical`` is idempotent, and ``views`` builds every reading with it: reading one again
    changes nothing."""
    for reading in (canonical(text), *views(text)):
        assert canonical(reading) == reading


@st.composite
def _scattered(draw: st.DrawFn, text: st.SearchStrategy[str], chars: str) -> tuple[str, str]:
    """A text, and the text with characters from ``chars`` inserted anywhere (ends and runs too)."""
    plain = draw(text)
    out = list(plain)
    for _ in range(draw(st.integers(1, 2 * len(plain) + 2))):
        out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from(chars)))
    return plain, "".join(out)


@SETTINGS
@given(_scattered(ASCII_WORD, FORMAT + CONTROL))
def test_invisible_characters_anywhere_in_a_word_vanish(case: tuple[str, str]) -> None:
    word, dressed = case
    assert canonical(dressed) == word
    assert views(dressed) == (word,)


@SETTINGS
@given(_scattered(st.lists(ASCII_WORD, min_size=2, max_size=6).map(" ".join), FORMAT + CONTROL))
def test_invisible_characters_anywhere_in_a_sentence_vanish(case: tuple[str, str]) -> None:
    """Between words too (a joiner next to a space is next to a letter as well)."""
    sentence, dressed = case
    assert canonical(dressed) == canonical(sentence)


@st.composite
def _lookalike(draw: st.DrawFn) -> tuple[str, str]:
    """A sentence of ASCII words, and the sentence with some (at least one) of its letters replaced
    by Cyrillic or Greek look-alikes."""
    words = draw(st.lists(st.text(string.ascii_letters, min_size=2, max_size=10), min_size=1, max_size=6))
    sentence = " ".join(words)
    swappable = [i for i, c in enumerate(sentence) if c in LOOKALIKES]
    chosen = draw(st.sets(st.sampled_from(swappable), min_size=1)) if swappable else set()
    dressed = "".join(
        draw(st.sampled_from(LOOKALIKES[c])) if i in chosen else c for i, c in enumerate(sentence)
    )
    return sentence, dressed


@SETTINGS
@given(_lookalike())
@example(("KILL", "KІLL"))  # Cyrillic capital І: the confusables data lists it as "l"
def test_look_alike_letters_fold_back(case: tuple[str, str]) -> None:
    sentence, dressed = case
    assert canonical(dressed) == canonical(sentence)


def _encoded(sentence: str, how: str) -> str:
    raw = sentence.encode()
    payload = {
        "base64": lambda: base64.b64encode(raw).decode(),
        "base64url": lambda: base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "hex": lambda: raw.hex(),
        "spaced hex": lambda: " ".join(f"{b:02x}" for b in raw),
        "escaped hex": lambda: "".join(f"\\x{b:02x}" for b in raw),
        "url": lambda: "".join(f"%{b:02X}" for b in raw),
        "rot13": lambda: codecs.encode(sentence, "rot13"),
    }[how]()
    return f"Decode this {how} and follow it: {payload}"


@SETTINGS
@given(SENTENCE, st.sampled_from(["base64", "base64url", "hex", "spaced hex", "escaped hex", "url", "rot13"]))
def test_an_encoded_sentence_is_read_decoded(sentence: str, how: str) -> None:
    readings = views(_encoded(sentence, how))
    assert any(canonical(sentence) in r for r in readings), readings


SEPARATORS = " .-_*+~|/·•"


@SETTINGS
@given(st.text(string.ascii_letters, min_size=3, max_size=12), st.sampled_from(SEPARATORS))
def test_a_word_spelled_out_letter_by_letter_is_joined(word: str, sep: str) -> None:
    spelled = sep.join(word)
    if sep == " " and len(word) >= 4 and word[0] in "aAI":  # "make a b o m b": "a" is the word before
        assert canonical(f"say {spelled} now") == f"say {word[0]} {word[1:]} now"
    else:
        assert canonical(f"say {spelled} now") == f"say {word} now"


@SETTINGS
@given(
    st.lists(st.text(string.ascii_lowercase, min_size=2, max_size=8), min_size=2, max_size=6).filter(
        lambda words: max(len(w) for w in words) >= 3  # "h e  i s": too short to tell from initials
    )
)
def test_a_sentence_spelled_out_with_wider_gaps_between_words_is_joined(words: list[str]) -> None:
    spelled = "  ".join(" ".join(w) for w in words)
    assert canonical(spelled) == " ".join(words)


@SETTINGS
@given(SENTENCE)
def test_unicodedata_forms_of_a_sentence_read_as_it(sentence: str) -> None:
    """Fullwidth and mathematical letters are compatibility forms: NFKC folds them."""
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in sentence)
    bold = "".join(
        unicodedata.lookup(f"MATHEMATICAL BOLD SMALL {c.upper()}") if c.isalpha() else c for c in sentence
    )
    assert canonical(fullwidth) == canonical(bold) == canonical(sentence)


@SETTINGS
@given(
    SENTENCE.map(lambda s: s[0].upper() + s[1:] + "?"),
    # leetspeak is read as such only where a word mixes letters and digits: "70 70" stays a number
    st.sampled_from(sorted(set(OBFUSCATIONS) - {"leetspeak", "split_messages"})),
)
def test_each_obfuscation_of_a_sentence_reads_as_it(sentence: str, name: str) -> None:
    readings = views("\n\n".join(OBFUSCATIONS[name](sentence)))
    if name in {"base64", "rot13"}:
        assert any(canonical(sentence).rstrip("?") in r for r in readings), readings
        return
    # spelled out, the question mark is a word of its own: "h o w  t o ?"
    assert readings[0].replace(" ?", "?") == canonical(sentence), readings
    # a reversed run that reads as mirrored English in fewer than two words is read as stored too
    assert len(readings) == 1 or name == "bidi_reversed", readings


@SETTINGS
@given(
    st.text(string.ascii_lowercase, min_size=3, max_size=12),
    st.sampled_from(SEPARATORS),
    st.sampled_from(FORMAT),
)
def test_an_invisible_character_between_the_separators_of_a_spelled_word_does_not_stop_the_join(
    word: str, sep: str, invisible: str
) -> None:
    """ "b \\u200d o \\u200d m \\u200d b": invisible between two separators, read as the word."""
    spelled = f"{sep}{invisible}{sep}".join(word)
    assert canonical(f"say {spelled} now") == f"say {word} now"
