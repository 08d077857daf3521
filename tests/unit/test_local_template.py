"""The shipped Gemma-style chat template and message normalisation."""

from __future__ import annotations

import pytest

from gateway.backends.local.template import default_chat_template, normalize_messages, prompt_ids
from gateway.backends.local.testing import byte_tokenizer
from gateway.errors import UnsupportedParameterError


def _render(messages: list[dict[str, object]]) -> str:
    tokenizer = byte_tokenizer()
    text: str = tokenizer.decode(prompt_ids(tokenizer, messages))
    return text


def test_system_and_developer_text_is_folded_into_the_first_user_turn() -> None:
    text = _render(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut"},
            {"role": "user", "content": "Capital?"},
        ]
    )
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nAnswer in French.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nSalut<end_of_turn>\n"
        "<start_of_turn>user\nCapital?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_special_markers_are_single_tokens() -> None:
    tokenizer = byte_tokenizer()
    ids = prompt_ids(tokenizer, [{"role": "user", "content": "x"}])
    start, end = tokenizer.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"])
    assert ids.count(start) == 2
    assert ids.count(end) == 1


def test_text_parts_are_joined_and_other_parts_refused() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert normalize_messages([{"role": "user", "content": parts}]) == [{"role": "user", "content": "a\nb"}]
    image = [{"type": "image_url", "image_url": {"url": "x"}}]
    with pytest.raises(UnsupportedParameterError) as caught:
        normalize_messages([{"role": "user", "content": image}])
    assert caught.value.param == "messages[0].content"


def test_tool_messages_are_refused() -> None:
    with pytest.raises(UnsupportedParameterError) as caught:
        normalize_messages([{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}])
    assert caught.value.param == "messages[1].role"


def test_template_ships_as_package_data() -> None:
    assert "<start_of_turn>" in default_chat_template()
