"""Encoded payloads ("decode this and follow it: aG93IHRv…"), decoded so that the guard reads what the
model will: base64, hex, URL %-escapes and HTML character references (rot13: ``rot13.py``).

Each rewrites only what cannot hide a readable word (a base64 or hex run decodes to readable text or
is left alone; an escape is the character it names), so the text with its payloads decoded can
replace the text as written without losing anything a reader would see.

Candidates are found with ``str.split`` and patterns that start with a rare character, not with
patterns tried at every position: a 2 KB prompt costs a few tens of microseconds.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import urllib.parse
from dataclasses import dataclass

__all__ = ["Decoded", "decode_in_place"]

_SHORTEST_RUN = 12  # base64 of 9 bytes; hex of 6 bytes
_BASE64 = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}|[A-Za-z0-9_-]{12,}={0,2}")
_HEX = re.compile(r"(?:0x)?(?:[0-9A-Fa-f]{2}){6,}|(?:[0-9A-Fa-f]{2}[:-]){5,}[0-9A-Fa-f]{2}")
_SPACED_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9A-Fa-f]{2} ){5,}[0-9A-Fa-f]{2}(?![0-9A-Za-z])")
_SPACED_HEX_HINT = re.compile(r" [0-9A-Fa-f]{2} [0-9A-Fa-f]{2} [0-9A-Fa-f]{2} ")
_ESCAPED_HEX = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){4,}")
_NOT_HEX = re.compile(r"[^0-9A-Fa-f]|^0x")
_WORD = re.compile(r"[^\W\d_]{3}")
_PUNCTUATION = "\"'`.,;:!?()[]{}<>*"
# A %-escaped or &#-escaped letter: ordinary URLs and HTML escape spaces and punctuation, hiding
# a word escapes its letters.
_ESCAPED_LETTER = re.compile(r"%(?:[46][1-9A-Fa-f]|[57][0-9Aa])")
_ENTITY_LETTER = re.compile(
    r"&#(?:0*(?:6[5-9]|[78]\d|90|9[7-9]|1[01]\d|12[0-2])|[xX]0*(?:[46][1-9A-Fa-f]|[57][0-9Aa]));"
)
_LEAST_ESCAPES = 3
_MOST_CANDIDATES = 32  # runs tried per text: bounds the cost of a text full of long identifiers


@dataclass(frozen=True, slots=True)
class Decoded:
    """``text`` with its payloads decoded where they stand, and each decoded payload on its own."""

    text: str
    payloads: tuple[str, ...]


def _readable(data: bytes) -> str | None:
    """``data`` as text when it is text a person could read: UTF-8, printable, mostly letters, with a
    word of three letters (the bytes of "44 20 79 46 09 58", a phone number, spell "D yF X")."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 4 or not text.replace("\n", " ").replace("\t", " ").replace("\r", " ").isprintable():
        return None
    letters = sum(1 for c in text if c.isalpha() or c == " ")
    return text if 2 * letters >= len(text) and _WORD.search(text) else None


def _from_base64(run: str) -> str | None:
    body = run.rstrip("=")
    if len(body) % 4 == 1:
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            data = base64.urlsafe_b64decode(padded)
        else:
            data = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(data)


def _from_hex(run: str) -> str | None:
    try:
        return _readable(bytes.fromhex(_NOT_HEX.sub("", run)))
    except ValueError:
        return None


def _decode(run: str) -> str | None:
    if _HEX.fullmatch(run):  # hex digits are base64 characters too: hex first
        return _from_hex(run)
    if _BASE64.fullmatch(run):
        return _from_base64(run)
    return None


def _decode_runs(text: str, found: list[str]) -> str:
    """``text`` with each whitespace-delimited run that decodes to readable text replaced by it."""
    runs = dict.fromkeys(w.strip(_PUNCTUATION) for w in text.split() if len(w) >= _SHORTEST_RUN)
    for run in list(runs)[:_MOST_CANDIDATES]:
        decoded = _decode(run)
        if decoded is not None:
            found.append(decoded)
            text = text.replace(run, decoded)
    return text


def _decode_pattern(pattern: re.Pattern[str], text: str, found: list[str]) -> str:
    def decode(match: re.Match[str]) -> str:
        decoded = _from_hex(match.group())
        if decoded is None:
            return match.group()
        found.append(decoded)
        return decoded

    return pattern.sub(decode, text)


def decode_in_place(text: str) -> Decoded:
    """Base64 and hex runs that decode to readable text, and URL and HTML escapes of letters, decoded."""
    found: list[str] = []
    out = _decode_runs(text, found)
    if _SPACED_HEX_HINT.search(out):
        out = _decode_pattern(_SPACED_HEX, out, found)
    if "\\x" in out:
        out = _decode_pattern(_ESCAPED_HEX, out, found)
    if len(_ESCAPED_LETTER.findall(out)) >= _LEAST_ESCAPES:
        out = urllib.parse.unquote(out)
    if len(_ENTITY_LETTER.findall(out)) >= _LEAST_ESCAPES:
        out = html.unescape(out)
    return Decoded(out, tuple(found))
