"""The SFT data: our demonstrations as shipped, every source's errors named, a stable split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from trainer.datasets import (
    Conversation,
    DataError,
    cut_answer,
    demo_conversations,
    instruction_conversations,
    split,
)

ROOT = Path(__file__).resolve().parents[2]
DEMOS = ROOT / "trainer/data/assistant/demos"
HELDOUT = ROOT / "trainer/data/assistant/heldout"


def test_the_shipped_demonstrations_cover_eight_languages_and_every_kind():
    conversations = demo_conversations(DEMOS)
    assert len(conversations) >= 400
    languages = Counter(c.lang for c in conversations)
    assert set(languages) >= {"en", "de", "fr", "es", "it", "pt", "zh", "ar"}
    assert min(languages.values()) >= 50
    kinds = Counter(c.kind for c in conversations)
    for kind in (
        "greeting",
        "fact",
        "howto",
        "rewrite",
        "summarize",
        "list",
        "json",
        "table",
        "multiturn",
        "sounds_unsafe",
        "refusal",
    ):
        assert kinds[kind] >= 8 * 4, kind
    for c in conversations:
        if c.kind == "json":
            json.loads(c.messages[-1][1])  # JSON on request is JSON and nothing else
    assert any(len([m for m in c.messages if m[0] == "user"]) >= 2 for c in conversations)


def test_no_held_out_prompt_is_a_training_prompt():
    trained = {m[1].strip().lower() for c in demo_conversations(DEMOS) for m in c.messages if m[0] == "user"}
    held = [
        json.loads(line)["prompt"]
        for path in HELDOUT.glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(held) >= 160
    assert not {p.strip().lower() for p in held} & trained


def test_the_acceptance_prompts_are_not_trained_on():
    trained = " ".join(m[1].lower() for c in demo_conversations(DEMOS) for m in c.messages if m[0] == "user")
    for prompt in (
        "hello! what can you do?",
        "wie koche ich reis?",
        "three tips for sleeping better as a json list",
    ):
        assert prompt not in trained


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('["a"]', "must be a JSON object"),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "role must be one of"),
        ('{"messages": [{"role": "user", "content": ""}]}', "non-empty string"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "end with the assistant"),
        ('{"messages": [{"role": "assistant", "content": "hi"}]}', "alternate"),
        (
            '{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},'
            ' {"role": "assistant", "content": "c"}]}',
            "system message may only come first",
        ),
    ],
)
def test_a_malformed_demonstration_is_named_by_file_and_line(tmp_path, line, message):
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]}'
    (tmp_path / "xx.jsonl").write_text(good + "\n" + line + "\n")
    with pytest.raises(DataError, match=rf"xx\.jsonl:2: .*{message}"):
        demo_conversations(tmp_path)


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        demo_conversations(tmp_path / "absent")
    with pytest.raises(DataError, match=r"no <lang>\.jsonl"):
        demo_conversations(tmp_path)
    with pytest.raises(DataError, match="topics file"):
        instruction_conversations(tmp_path / "absent.jsonl", 5, 0)
    (tmp_path / "t.jsonl").write_text('{"topic": "x"}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:1"):
        instruction_conversations(tmp_path / "t.jsonl", 5, 0)


def test_the_split_is_by_content_and_stable():
    conversations = [Conversation((("user", f"q{i}"), ("assistant", f"a{i}")), "demos") for i in range(400)]
    train, validation = split(conversations, 0.1)
    assert 20 <= len(validation) <= 60
    _, again_validation = split(reversed(conversations), 0.1)
    assert {c.digest for c in validation} == {c.digest for c in again_validation}
    assert not {c.digest for c in train} & {c.digest for c in validation}


def test_answers_are_cut_at_paragraph_boundaries():
    answer = "One two three.\n\nFour five six seven.\n\nEight nine ten eleven twelve."
    assert cut_answer(answer, 7) == "One two three.\n\nFour five six seven."
    assert cut_answer(answer, 2) is None
    assert cut_answer("Here are the steps:\n\n1. a b c d e f g h", 5) is None  # an intro without its list
