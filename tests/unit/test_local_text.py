"""Incremental detokenization and stop strings (`TextStream`), on a byte-level tokenizer."""

from __future__ import annotations

import pytest

from gateway.backends.local.testing import byte_tokenizer
from gateway.backends.local.text import TextStream


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


def _ids(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def test_multibyte_characters_are_never_split(tokenizer):
    text = "héllo 😀 wörld"
    ids = _ids(tokenizer, text)
    assert len(ids) > len(text)  # several tokens per character: the case under test
    stream = TextStream(tokenizer)
    deltas = [stream.push(i) for i in ids]
    deltas.append(stream.finish())
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_stop_string_cuts_the_text_and_is_never_released(tokenizer):
    stream = TextStream(tokenizer, stop=["STOP"])
    released = []
    for token in _ids(tokenizer, "abc STOP def"):
        released.append(stream.push(token))
        if stream.stopped:
            break
    released.append(stream.finish())
    assert stream.stopped
    assert "".join(released) == "abc "
    assert stream.text == "abc "


def test_prefix_of_a_stop_string_is_held_back_until_it_diverges(tokenizer):
    stream = TextStream(tokenizer, stop=["</end>"])
    out = "".join(stream.push(t) for t in _ids(tokenizer, "a</en"))
    assert out == "a"  # "</en" may still become "</end>"
    out += "".join(stream.push(t) for t in _ids(tokenizer, "x"))
    assert out == "a</enx"
    assert not stream.stopped


def test_finish_releases_a_held_back_tail(tokenizer):
    stream = TextStream(tokenizer, stop=["###"])
    out = "".join(stream.push(t) for t in _ids(tokenizer, "done ##"))
    assert out == "done "
    assert out + stream.finish() == "done ##"


def test_earliest_of_several_stop_strings_wins(tokenizer):
    stream = TextStream(tokenizer, stop=["world", "lo w"])
    for token in _ids(tokenizer, "hello world"):
        stream.push(token)
    assert stream.stopped
    assert stream.text == "hel"
