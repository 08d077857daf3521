from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

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
        sides = rule.both or ((), ())
        assert set(rule.sources) | set(sides[0]) | set(sides[1]) <= set(CATEGORIES)


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


def test_unsafe_alone_flags_a_broad_category_not_a_subcategory_that_ties_with_it() -> None:
    """As the shipped heads score "I will kill you tomorrow": only `unsafe` flags, `violent_crimes`
    scores 0.0002. `violence` and `violence/graphic` share that score; the broad one is flagged."""
    categories, scores = to_openai(zero() | {"unsafe": 0.99, "violent_crimes": 0.0002})
    assert [k for k, v in categories.items() if v] == ["violence"]
    assert scores["violence"] == scores["violence/graphic"] == 0.0002
    categories, _ = to_openai(zero() | {"unsafe": 0.99, "indiscriminate_weapons": 0.3})
    assert [k for k, v in categories.items() if v] == ["illicit"]


def test_drug_synthesis_is_illicit_not_violence() -> None:
    """Step-by-step methamphetamine synthesis, as the shipped heads score it (the weapons head fires
    too): illicit, and illicit/violent only because of that head; never violence."""
    scores = zero() | {"unsafe": 0.999, "non_violent_crimes": 0.86, "indiscriminate_weapons": 0.89}
    categories, _ = to_openai(scores)
    assert [k for k, v in categories.items() if v] == ["illicit", "illicit/violent"]
    categories, _ = to_openai(zero() | {"unsafe": 0.999, "non_violent_crimes": 0.86})
    assert [k for k, v in categories.items() if v] == ["illicit"]


# The mapping, rule by rule: what our categories flag, alone or together (docs/classifiers.md).
RULES = [
    ({"hate"}, {"harassment", "hate"}),
    ({"defamation"}, {"harassment"}),
    ({"violent_crimes"}, {"violence", "violence/graphic"}),
    (
        {"hate", "violent_crimes"},
        {"harassment", "harassment/threatening", "hate", "hate/threatening", "violence", "violence/graphic"},
    ),
    (
        {"defamation", "violent_crimes"},
        {"harassment", "harassment/threatening", "violence", "violence/graphic"},
    ),
    ({"non_violent_crimes"}, {"illicit"}),
    ({"intellectual_property"}, {"illicit"}),
    ({"code_interpreter_abuse"}, {"illicit"}),
    ({"sex_crimes"}, {"illicit", "sexual"}),
    ({"indiscriminate_weapons"}, {"illicit", "illicit/violent"}),
    (
        {"non_violent_crimes", "violent_crimes"},
        {"illicit", "illicit/violent", "violence", "violence/graphic"},
    ),
    ({"self_harm"}, {"self-harm", "self-harm/intent", "self-harm/instructions"}),
    ({"sexual_content"}, {"sexual"}),
    ({"child_exploitation"}, {"sexual", "sexual/minors"}),
    ({"specialized_advice"}, set()),
    ({"privacy"}, set()),
    ({"elections"}, set()),
    ({"jailbreak"}, set()),
    ({"prompt_injection"}, set()),
    ({"pii"}, set()),
]


@pytest.mark.parametrize(("ours", "theirs"), RULES, ids=["+".join(sorted(o)) for o, _ in RULES])
def test_each_rule_of_the_mapping(ours: set[str], theirs: set[str]) -> None:
    categories, scores = to_openai(zero() | dict.fromkeys(ours, 0.9))
    assert {k for k, v in categories.items() if v} == theirs
    assert {k for k, v in scores.items() if v == 0.9} == theirs
    below, _ = to_openai(zero() | dict.fromkeys(ours, 0.4))  # the same scores, under the thresholds
    assert not any(below.values())


def test_every_openai_category_has_a_rule_above() -> None:
    assert set().union(*(theirs for _, theirs in RULES)) == set(OPENAI_CATEGORIES)


def test_a_subcategory_never_flags_without_its_parent() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        scores = {c: rng.random() ** 3 for c in CATEGORIES}
        categories, category_scores = to_openai(scores)
        for sub in (c for c in OPENAI_CATEGORIES if "/" in c):
            parent = sub.split("/")[0]
            assert category_scores[sub] <= category_scores[parent], (sub, scores)
            assert categories[parent] or not categories[sub], (sub, scores)


def test_the_documented_table_is_the_mapping() -> None:
    """docs/classifiers.md lists what each of our categories flags on its own."""
    docs = (Path(__file__).parents[2] / "docs" / "classifiers.md").read_text(encoding="utf-8")
    table = docs.split("## Taxonomy and mappings", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `(\w+)` \| [^|]* \| ([^|]*) \|", table, re.MULTILINE)
    assert len(rows) == len(CATEGORIES) - 1  # all but `unsafe`, which has its own row
    for ours, alone in rows:
        documented = set(re.findall(r"`([\w/-]+)`", alone)) & set(OPENAI_CATEGORIES)
        categories, _ = to_openai(zero() | {ours: 0.9})
        assert documented == {k for k, v in categories.items() if v}, ours


def test_llama_guard_codes() -> None:
    s = zero() | {"violent_crimes": 0.9, "elections": 0.6, "hate": 0.2}
    assert to_llama_guard(s) == ["S1", "S13"]
    assert to_llama_guard(s, {"hate": 0.1}) == ["S1", "S10", "S13"]
