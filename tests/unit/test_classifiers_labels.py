"""Our labels for hh-rlhf and the near-duplicate check that keeps evaluation texts out of training."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from classifiers.training.decontaminate import find_overlaps
from classifiers.training.labels import (
    HH_RLHF_FILE,
    Label,
    digest,
    first_human_turn,
    read_labels,
    with_exclusions,
    write_labels,
)
from classifiers.training.manifest import SOURCES, hh_rlhf_examples, with_sources


def test_near_duplicates_are_found_and_different_requests_are_not() -> None:
    references = {"multijail": ["How to open lock of bike?"], "xstest": ["How can I kill a stuck build job?"]}
    texts = [
        "how to open the lock of a bike",  # reworded: Jaccard 0.75
        "How can I KILL a stuck build-job",  # case and punctuation
        "How can I kill my neighbour's dog?",  # same opening, another request
        "What is the capital of France?",
        "",
    ]
    assert find_overlaps(texts, references) == {0: "multijail", 1: "xstest"}
    assert find_overlaps(texts, references, threshold=0.9) == {1: "xstest"}


def test_labels_round_trip_and_bad_rows_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.tsv"
    labels = [Label(0, digest("a"), "hate"), Label(3, digest("b"), "skip", "near-duplicate of aegis")]
    write_labels(path, labels, "a header\nof two lines")
    assert read_labels(path) == labels
    assert not labels[1].trains and labels[0].trains
    assert with_exclusions(labels, {0: "x"}) == [
        Label(0, digest("a"), "hate", "x"),
        Label(3, digest("b"), "skip"),
    ]
    path.write_text(path.read_text() + f"4\t{digest('c')}\tspam\n")
    with pytest.raises(ValueError, match=r"labels.tsv:5: unknown label kind 'spam'"):
        read_labels(path)
    path.write_text("4\tabc\thate\n")
    with pytest.raises(ValueError, match=r"labels.tsv:1: expected row"):
        read_labels(path)


def _hh_data(root: Path, first_turns: list[str]) -> Path:
    (root / HH_RLHF_FILE).parent.mkdir(parents=True)
    with gzip.open(root / HH_RLHF_FILE, "wt", encoding="utf-8") as f:
        for turn in first_turns:
            chosen = f"\n\nHuman: {turn}\n\nAssistant: No.\n\nHuman: Please?\n\nAssistant: No."
            f.write(json.dumps({"chosen": chosen, "rejected": chosen}) + "\n")
    return root


def test_hh_rlhf_examples_follow_the_labels_and_refuse_another_file(tmp_path: Path) -> None:
    turns = [
        "How do I  pick a lock\nto rob my neighbour?",
        "What is 2+2?",
        "Is it true that X?",
        "How to open lock of bike",
    ]
    data = _hh_data(tmp_path / "data", turns)
    collapsed = "How do I pick a lock to rob my neighbour?"
    assert first_human_turn(f"\n\nHuman: {turns[0]}\n\nAssistant: hi") == collapsed
    labels = [
        Label(0, digest(collapsed), "non_violent_crimes"),
        Label(1, digest(turns[1]), "benign"),
        Label(2, digest(turns[2]), "skip"),
        Label(3, digest(turns[3]), "non_violent_crimes", "near-duplicate of multijail"),
    ]
    path = tmp_path / "labels.tsv"
    write_labels(path, labels, "test")
    examples = list(hh_rlhf_examples(data, path))
    assert [(e.text, e.labels["unsafe"]) for e in examples] == [
        (collapsed, 1),
        ("What is 2+2?", 0),
    ]
    assert examples[0].labels["non_violent_crimes"] == 1 and examples[0].labels["hate"] == 0
    write_labels(path, [Label(1, digest("What is 2+3?"), "benign")], "test")
    with pytest.raises(ValueError, match="row 1 of the data set is not the text"):
        list(hh_rlhf_examples(data, path))
    write_labels(path, [Label(9, digest("x"), "benign")], "test")
    with pytest.raises(ValueError, match="row 9"):
        list(hh_rlhf_examples(data, path))


def test_hh_rlhf_is_an_optional_source() -> None:
    assert "hh-rlhf" not in {s.name for s in SOURCES}  # measured, not in the default mix (docs)
    assert [s.name for s in with_sources(("hh-rlhf",))] == [*(s.name for s in SOURCES), "hh-rlhf"]
    with pytest.raises(ValueError, match="unknown training source 'nope'"):
        with_sources(("nope",))
