from __future__ import annotations

from classifiers.taxonomy import (
    CATEGORIES,
    HAZARDS,
    LEARNED,
    OPENAI_CATEGORIES,
    OPENAI_MAPPING,
    to_llama_guard,
    to_openai,
)

OPENAI_KEYS = {
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
    "sexual/minors", "violence", "violence/graphic",
}  # fmt: skip


def zero() -> dict[str, float]:
    return dict.fromkeys(CATEGORIES, 0.0)


def test_categories_cover_llama_guard_and_attacks() -> None:
    assert [h.code for h in HAZARDS] == [f"S{i}" for i in range(1, 15)]
    assert {"jailbreak", "prompt_injection", "pii", "unsafe"} <= set(CATEGORIES)
    assert set(LEARNED) | {"pii"} == set(CATEGORIES)


def test_openai_keys_are_exactly_openais() -> None:
    categories, scores = to_openai(zero())
    assert set(categories) == set(scores) == OPENAI_KEYS == set(OPENAI_CATEGORIES)
    assert not any(categories.values())
    for rule in OPENAI_MAPPING.values():
        assert set(rule.sources) <= set(CATEGORIES)


def test_hate_maps_to_hate_and_harassment_not_threatening() -> None:
    categories, scores = to_openai(zero() | {"hate": 0.9, "unsafe": 0.9})
    assert categories["hate"] and categories["harassment"]
    assert not categories["hate/threatening"]
    assert scores["hate"] == 0.9
    assert scores["hate/threatening"] == 0.0


def test_threatening_needs_both_sources() -> None:
    categories, scores = to_openai(zero() | {"hate": 0.8, "violent_crimes": 0.7})
    assert categories["hate/threatening"] and categories["violence"]
    assert scores["hate/threatening"] == 0.7


def test_thresholds_are_respected() -> None:
    s = zero() | {"self_harm": 0.3}
    assert not to_openai(s)[0]["self-harm"]
    assert to_openai(s, {"self_harm": 0.25})[0]["self-harm/intent"]


def test_unsafe_alone_flags_the_closest_category() -> None:
    categories, _ = to_openai(zero() | {"unsafe": 0.95, "non_violent_crimes": 0.3})
    assert [k for k, v in categories.items() if v] == ["illicit"]


def test_llama_guard_codes() -> None:
    s = zero() | {"violent_crimes": 0.9, "elections": 0.6, "hate": 0.2}
    assert to_llama_guard(s) == ["S1", "S13"]
    assert to_llama_guard(s, {"hate": 0.1}) == ["S1", "S10", "S13"]
