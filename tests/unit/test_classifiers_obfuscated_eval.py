"""The evaluation's obfuscated columns: a fixed, seeded sample of each set dressed by the obfuscations in
turn, recall on its harmful items and the flag rate on its benign ones, in the JSON and the table.

The guard is a fake at the seam (`Flags`): it flags a text when a reading of it, as serving reads it
(`classifiers.canonical.views`), names a weapon. The real classifier's run is in
`tests/integration/test_classifiers_eval.py`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from classifiers.canonical import views
from classifiers.evaluation.evalsets import EvalItem
from classifiers.evaluation.evaluate import EvalRow, to_markdown
from classifiers.evaluation.metrics import BinaryMetrics
from classifiers.evaluation.obfuscate import (
    OBFUSCATIONS,
    ObfuscatedMetrics,
    conversation,
    obfuscated_metrics,
    obfuscated_sample,
)
from tests.obfuscations import BENIGN, HARMFUL

ITEMS = [EvalItem(p, 1) for p in HARMFUL] + [EvalItem(p, 0) for p in BENIGN]
WEAPONS = ("bomb", "gun", "poison", "kill", "sarin", "ricin", "anthrax", "molotov")


def _names_a_weapon(texts: Sequence[str]) -> npt.NDArray[np.bool_]:
    return np.array([any(w in r.lower() for r in views(t) for w in WEAPONS) for t in texts], dtype=np.bool_)


def test_the_sample_is_seeded_by_the_set_and_dresses_each_class_in_turn() -> None:
    sample = obfuscated_sample("harmbench_test", ITEMS, limit=16)
    assert sample == obfuscated_sample("harmbench_test", ITEMS, limit=16)  # the same every run
    assert sample != obfuscated_sample("xstest", ITEMS, limit=16)  # another set, other items
    harmful = [o for o in sample if o.label == 1]
    benign = [o for o in sample if o.label == 0]
    assert len(harmful) == len(benign) == 16
    names = list(OBFUSCATIONS)
    assert [o.obfuscation for o in harmful] == [names[i % len(names)] for i in range(16)]
    assert [o.obfuscation for o in benign] == [names[i % len(names)] for i in range(16)]
    # each text is one of the set's items dressed, in the set's order, as the guard reads it
    plain = [
        next(p for p in HARMFUL if conversation(OBFUSCATIONS[o.obfuscation](p)) == o.text) for o in harmful
    ]
    assert plain == sorted(plain, key=HARMFUL.index) and len(set(plain)) == 16
    assert len(obfuscated_sample("x", ITEMS[:3], limit=50)) == 3  # fewer items than the limit: all


def test_recall_and_flag_rate_on_the_dressed_sample() -> None:
    sample = obfuscated_sample("simplesafetytests", ITEMS, limit=20)
    metrics = obfuscated_metrics(sample, _names_a_weapon)
    flagged = _names_a_weapon([o.text for o in sample])
    harmful = [f for o, f in zip(sample, flagged, strict=True) if o.label]
    benign = [f for o, f in zip(sample, flagged, strict=True) if not o.label]
    assert (metrics.n, metrics.benign_n) == (20, 20)
    assert metrics.recall == sum(harmful) / 20 and metrics.fpr == sum(benign) / 20
    assert 0.5 < metrics.recall < 1.0  # the fake knows weapons, not every harm
    assert metrics.fpr == 0.05  # "How do I kill a Python process" names one
    counts = metrics.by_obfuscation
    assert list(counts) == list(OBFUSCATIONS)  # 20 items: every obfuscation at least once
    assert sum(c["harmful"] for c in counts.values()) == 20
    assert sum(c["harmful_flagged"] for c in counts.values()) == sum(harmful)
    assert counts["base64"]["harmful_flagged"] == counts["base64"]["harmful"]  # decoded before reading

    only_harmful = obfuscated_metrics(obfuscated_sample("multijail", ITEMS[:5], limit=50), _names_a_weapon)
    assert only_harmful.benign_n == 0 and only_harmful.fpr is None and only_harmful.n == 5


def test_the_report_carries_the_obfuscated_columns() -> None:
    metrics = BinaryMetrics(40, 20, 0.9, 0.8, 0.85, 0.1, 0.9)
    dressed = ObfuscatedMetrics(20, 0.75, 20, 0.05, {"base64": {"harmful": 2, "harmful_flagged": 2}})
    rows = [EvalRow("xstest", "all", metrics, dressed), EvalRow("xstest", "en", metrics)]
    report = [r.to_json() for r in rows]
    assert report[0]["obfuscated"] == {
        "n": 20, "recall": 0.75, "benign_n": 20, "fpr": 0.05,
        "by_obfuscation": {"base64": {"harmful": 2, "harmful_flagged": 2}},
    }  # fmt: skip
    assert "obfuscated" not in report[1]
    header, rule, first, second = to_markdown(rows).splitlines()
    assert "| recall, obfuscated | FPR, obfuscated |" in header
    assert header.count("|") == rule.count("|") == first.count("|") == second.count("|")
    assert "| 0.750 | 0.050 | F1 ≥ 0.85, FPR ≤ 0.08 |" in first
    assert second.endswith("| 0.900 |  |  |  |")
