from __future__ import annotations

from collections import Counter

import pytest

from classifiers.taxonomy import HAZARD_NAMES, LEARNED
from classifiers.training.manifest import split
from classifiers.training.seed import Example, label_set, read_seed


def test_label_sets() -> None:
    assert label_set("benign") == dict.fromkeys(LEARNED, 0)
    hate = label_set("hate")
    assert hate["unsafe"] == hate["hate"] == 1 and hate["violent_crimes"] == 0 and hate["jailbreak"] == 0
    unknown = label_set("unsafe")
    assert unknown["unsafe"] == 1 and not set(HAZARD_NAMES) & set(unknown)
    assert label_set("jailbreak") == {"jailbreak": 1}
    with pytest.raises(ValueError, match="unknown label"):
        label_set("spam")


def test_seed_examples_cover_languages_and_every_hazard() -> None:
    seed = list(read_seed())
    assert len(seed) >= 4000
    assert len({e.text for e in seed}) == len(seed)  # no example written twice (it would weigh double)
    langs = Counter(e.lang for e in seed)
    assert {"en", "zh", "ar", "th", "bn", "sw", "jv", "vi", "ko", "it"} <= set(langs)
    assert all(len(lang) == 2 for lang in langs)
    positives = {k for e in seed for k, v in e.labels.items() if v == 1}
    assert set(HAZARD_NAMES) | {"jailbreak", "prompt_injection"} <= positives
    benign = sum(1 for e in seed if not any(e.labels.values()))
    assert benign > len(seed) / 3


def test_split_is_deterministic_and_disjoint() -> None:
    examples = [Example(f"text {i}", label_set("benign"), "t") for i in range(1000)]
    train1, val1 = split(examples, 0.2)
    _, val2 = split(list(reversed(examples)), 0.2)
    assert {e.text for e in val1} == {e.text for e in val2}
    assert not {e.text for e in train1} & {e.text for e in val1}
    assert 150 < len(val1) < 250
