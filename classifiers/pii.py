"""Personal data in text: find it with patterns (checksums where the format has one) and redact it.

Each detector yields candidate spans with a confidence; where candidates overlap, the most confident
(then the longest) wins, so a Luhn-valid card number is not also reported as a phone number.
Names and street addresses are found only after a cue ("my name is", "Mr.", a house number followed by
a street word): pattern matching cannot find every name, and this says so rather than guessing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["PII_KINDS", "PiiSpan", "find_pii", "iban_valid", "luhn_valid", "redact"]


@dataclass(frozen=True, slots=True)
class PiiSpan:
    """Characters ``text[start:end]`` look like personal data of ``kind`` with confidence ``score``."""

    kind: str
    start: int
    end: int
    score: float


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that payment card numbers carry."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# ISO 13616 lengths for the countries most likely to appear; others need 15-34 characters.
_IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
    "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
    "SA": 24, "AE": 23, "BR": 29, "UA": 29,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """The ISO 7064 mod-97 check of an IBAN (spaces ignored), with the country's length if known."""
    s = re.sub(r"\s+", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    expected = _IBAN_LENGTHS.get(s[:2])
    if expected is not None and len(s) != expected:
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _dni_valid(s: str) -> bool:
    s = s.upper()
    num = s[:-1].replace("X", "0").replace("Y", "1").replace("Z", "2")
    return num.isdigit() and "TRWAGMYFPDXBNJZSQVHLCKE"[int(num) % 23] == s[-1]


def _cpf_valid(s: str) -> bool:
    d = [int(c) for c in re.sub(r"\D", "", s)]
    if len(d) != 11 or len(set(d)) == 1:
        return False
    for n in (9, 10):
        check = sum(d[i] * (n + 1 - i) for i in range(n)) * 10 % 11 % 10
        if check != d[n]:
            return False
    return True


def _cn_id_valid(s: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c) * w for c, w in zip(s[:17], weights, strict=True))
    return "10X98765432"[total % 11] == s[17].upper()


_Check = Callable[[str], bool] | None
_PATTERNS: tuple[tuple[str, re.Pattern[str], float, _Check], ...] = (
    ("EMAIL", re.compile(r"\b[\w.%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,24}\b"), 0.99, None),
    (
        "CREDIT_CARD",
        re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
        0.97,
        lambda m: luhn_valid(re.sub(r"\D", "", m)) and len(set(re.sub(r"\D", "", m))) > 1,
    ),
    ("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), 0.97, iban_valid),
    (
        "US_SSN",
        re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"),
        0.9,
        None,
    ),
    (
        "UK_NINO",
        re.compile(
            r"\b(?![DFIQUV])[A-CEGHJ-PR-TW-Z](?![DFIQUVO])[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"
        ),
        0.85,
        None,
    ),
    ("ES_DNI", re.compile(r"\b[XYZ]?\d{7,8}[A-Z]\b"), 0.9, _dni_valid),
    ("BR_CPF", re.compile(r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b"), 0.9, _cpf_valid),
    ("CN_ID", re.compile(r"\b\d{17}[\dXx]\b"), 0.9, _cn_id_valid),
    (  # written as a phone number: a country code, an area code in brackets, or grouped digits
        "PHONE",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?!\w)"
        ),
        0.7,
        lambda m: (
            8 <= len(re.sub(r"\D", "", m)) <= 15
            and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", m)
            and re.search(r"[ .()+-]", m) is not None  # bare digits are any number: a count, an id, a time
        ),
    ),
    (  # bare digits, where the text says they are a phone number
        "PHONE",
        re.compile(
            r"(?i:\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms|telefon|t[ée]l[ée]phone|"
            r"tel[ée]fono|handy|portable|m[óo]vil|celular|cellulare)s?\b)"
            r"[^\d\n]{0,24}(?<![\w+])(\d{8,15})(?!\w)"
        ),
        0.7,
        None,
    ),
    (
        "NAME",
        re.compile(
            r"(?:(?i:my name is|i am called|name:|nombre:|je m'appelle|ich heiße|mi chiamo)\s+"
            r"|\b(?:Mr|Mrs|Ms|Dr|Prof)\.?\s+)([A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+){0,2})"
        ),
        0.7,
        None,
    ),
    (
        "ADDRESS",
        re.compile(
            r"\b\d{1,5}[a-z]?\s+(?:[A-Z][a-z]+\s+){1,3}"
            r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl)\b"
            r"|\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|weg|allee|platz|gasse)\s+\d{1,4}[a-z]?\b"
        ),
        0.65,
        None,
    ),
)
_IP_CANDIDATE = re.compile(
    r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w.:])"
)


def _candidates(text: str) -> Iterator[PiiSpan]:
    for kind, pattern, score, check in _PATTERNS:
        for m in pattern.finditer(text):
            group = 1 if pattern.groups and m.group(1) is not None else 0
            value = m.group(group)
            if check is None or check(value):
                yield PiiSpan(kind, m.start(group), m.end(group), score)
    for m in _IP_CANDIDATE.finditer(text):
        try:
            addr = ipaddress.ip_address(m.group(0))
        except ValueError:
            continue
        yield PiiSpan("IP_ADDRESS", m.start(), m.end(), 0.9 if addr.version == 4 else 0.85)


def find_pii(text: str) -> tuple[PiiSpan, ...]:
    """Non-overlapping PII spans in ``text``, in order of position."""
    chosen: list[PiiSpan] = []
    for span in sorted(_candidates(text), key=lambda s: (-s.score, s.start - s.end)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return tuple(sorted(chosen, key=lambda s: s.start))


def redact(text: str, spans: tuple[PiiSpan, ...] | list[PiiSpan] | None = None) -> str:
    """``text`` with each span replaced by ``[KIND]``; finds the spans itself when none are given."""
    found = find_pii(text) if spans is None else spans
    out: list[str] = []
    pos = 0
    for span in sorted(found, key=lambda s: s.start):
        if span.start < pos:  # overlapping input spans: the earlier one already covers this
            continue
        out.append(text[pos : span.start])
        out.append(f"[{span.kind}]")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


PII_KINDS: tuple[str, ...] = (*(k for k, *_ in _PATTERNS), "IP_ADDRESS")
