"""The contrast pairs written for the classifiers: well-formed, balanced, split by pair, with a clear
error for a malformed line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from classifiers.taxonomy import ATTACKS, HAZARD_NAMES, UNSAFE
from classifiers.training.contrast import labels_of, read_contrast, split_pairs
from classifiers.training.manifest import with_sources


def test_every_file_is_well_formed_and_each_pair_holds_a_harmful_text_and_its_safe_twins():
    items = read_contrast()
    assert len({i.lang for i in items}) >= 4
    pairs: dict[str, list[str]] = {}
    for item in items:
        pairs.setdefault(item.pair, []).append(item.label)
    for pair, labels in pairs.items():
        harmful = [label for label in labels if label != "benign"]
        assert len(harmful) == 1 and len(labels) >= 2, pair
    texts = Counter(i.text.casefold() for i in items)
    assert texts.most_common(1)[0][1] == 1
    for lang in {i.lang for i in items}:  # every category, in every language
        categories = set().union(*(i.categories for i in items if i.lang == lang))
        assert categories == {*HAZARD_NAMES, *ATTACKS}, lang


def test_pairs_stay_whole_on_one_side_of_the_split():
    train, held_out = split_pairs(read_contrast())
    assert not {i.pair for i in train} & {i.pair for i in held_out}
    share = len(held_out) / (len(train) + len(held_out))
    assert 0.1 < share < 0.3


def test_labels_of_a_threat_flag_both_of_its_hazards_and_unsafe():
    labels = labels_of("violent_crimes+hate")
    assert labels[UNSAFE] == labels["violent_crimes"] == labels["hate"] == 1
    assert labels["sexual_content"] == labels["jailbreak"] == 0
    assert labels_of("jailbreak") == {"jailbreak": 1}
    assert set(labels_of("benign").values()) == {0}


def test_a_malformed_line_names_its_file_and_line(tmp_path: Path):
    (tmp_path / "xx.tsv").write_text(
        "# header\nxx-001\tbenign\teveryday\tHello there\nxx-001\tbogus\tdirect\thi\n"
    )
    with pytest.raises(ValueError, match=r"xx.tsv:3: unknown label kind 'bogus'"):
        read_contrast(tmp_path)
    (tmp_path / "xx.tsv").write_text("xx-001\tbenign\tHello there\n")
    with pytest.raises(ValueError, match=r"xx.tsv:1: expected pair"):
        read_contrast(tmp_path)


def test_excluded_texts_are_left_out_and_the_source_is_optional(tmp_path: Path):
    from classifiers.training.contrast import EXCLUDED_FILE, text_id

    (tmp_path / "xx.tsv").write_text(
        "a\tbenign\teveryday\tHello there\na\thate\tdirect\tYou people are vermin\n"
    )
    (tmp_path / EXCLUDED_FILE).write_text(f"# ids\n{text_id('Hello there')}\tnear-duplicate of xstest\n")
    assert [i.text for i in read_contrast(tmp_path)] == ["You people are vermin"]
    assert len(read_contrast(tmp_path, keep_excluded=True)) == 2
    assert "contrast" in {s.name for s in with_sources(("contrast",))}
