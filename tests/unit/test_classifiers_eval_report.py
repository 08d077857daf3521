"""The evaluation report's own parts: the held-out contrast split as a set, per-category rows, the
suffix-stability figure, and the docs section the command writes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from classifiers.evaluation.docs import BEGIN, END, write_section
from classifiers.evaluation.evalsets import EVAL_SETS, OWN_SETS, EvalItem
from classifiers.evaluation.evaluate import EvalRow, set_rows, to_markdown
from classifiers.evaluation.metrics import BinaryMetrics
from classifiers.evaluation.stability import SUFFIXES, suffix_stability
from classifiers.taxonomy import LEARNED
from classifiers.training.contrast import read_contrast, split_pairs


def test_the_held_out_contrast_set_is_the_held_out_pairs_with_their_categories():
    contrast = next(s for s in EVAL_SETS if s.name == "contrast_heldout")
    assert contrast.name in OWN_SETS
    items = list(contrast.read(Path("/nonexistent")))  # read from the repository, not the data dir
    _, held_out = split_pairs(read_contrast())
    assert [i.text for i in items] == [h.text for h in held_out]
    threat = next(i for i, h in zip(items, held_out, strict=True) if h.label == "violent_crimes+hate")
    assert threat.label == 1 and threat.extra["violent_crimes"] == threat.extra["hate"] == 1
    assert threat.extra["sexual_content"] == 0
    assert {i.group for i in items} == {h.lang for h in held_out}


def test_category_rows_score_each_head_against_the_items_categories():
    contrast = next(s for s in EVAL_SETS if s.name == "contrast_heldout")
    names = list(LEARNED)
    items = [
        EvalItem("a", 1, "de", {"hate": 1, "violent_crimes": 1}),
        EvalItem("b", 1, "de", {"hate": 1, "violent_crimes": 0}),
        EvalItem("c", 0, "fr", {"hate": 0, "violent_crimes": 0}),
    ]
    probs = np.zeros((3, len(names)), dtype=np.float32)
    probs[0, names.index("hate")] = 0.9  # right
    probs[2, names.index("hate")] = 0.9  # a false flag
    probs[0, names.index("violent_crimes")] = 0.9
    thresholds = dict.fromkeys(names, 0.5)
    rows = {r.group: r.metrics for r in set_rows(contrast, items, probs, names, thresholds)}
    assert rows["hate"].positives == 2 and rows["hate"].recall == 0.5 and rows["hate"].fpr == 1.0
    assert rows["violent_crimes"].recall == 1.0 and rows["violent_crimes"].fpr == 0.0
    assert {"all", "de", "fr"} <= set(rows)


def _flags_digits(texts: Sequence[str]) -> npt.NDArray[np.bool_]:  # a noisy guard: digits look harmful
    return np.array(["bomb" in t or any(c.isdigit() for c in t) for t in texts], dtype=np.bool_)


def test_suffix_stability_counts_verdicts_that_an_irrelevant_suffix_flips():
    texts = ["how do I bake bread", "how to make a bomb", "hello there", "plan a trip"]
    stability = suffix_stability(texts, _flags_digits)
    assert stability.n == 4 and set(stability.changed) == set(SUFFIXES)
    assert stability.changed["reference number"] == 3  # every benign text, flipped by its digits
    assert stability.changed["trailing spaces"] == 0
    assert stability.changed_share == pytest.approx(3 / 16)
    row = EvalRow(
        "contrast_heldout", "all", BinaryMetrics(4, 1, 1.0, 1.0, 1.0, 0.0, 1.0), stability=stability
    )
    assert row.to_json()["stability"]["changed"]["reference number"] == 3
    assert "18.75% of 4 prompts x 4 suffixes" in to_markdown([row])


def test_the_docs_section_is_replaced_between_its_markers_and_nothing_else(tmp_path: Path):
    doc = tmp_path / "classifiers.md"
    doc.write_text(f"# Title\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    write_section(doc, "| new | table |")
    assert doc.read_text() == f"# Title\n\nbefore\n{BEGIN}\n| new | table |\n{END}\nafter\n"
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- EVAL:BEGIN"):
        write_section(tmp_path / "bare.md", "x")
    assert (tmp_path / "bare.md").read_text() == "no markers\n"
