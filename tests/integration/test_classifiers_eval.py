"""The evaluation path end to end on a few items of the real sets (skipped without ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifiers import ClassifiersConfig
from classifiers.cli import default_data_dir, main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = default_data_dir()


@pytest.mark.skipif(DATA is None, reason="no ../shared/data beside the repository")
def test_eval_slice_writes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    code = main(["classifiers", "eval", "--limit", "12", "--sets", "xstest", "multijail",
                 "deepset_test", "--json", str(out)])  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert table.startswith("| set | group |") and "| multijail | all |" in table
    report = json.loads(out.read_text())
    assert report["limit"] == 12 and report["precision"] == ClassifiersConfig().precision
    rows = {(r["set"], r["group"]): r for r in report["rows"]}
    assert rows[("xstest", "all")]["n"] == 12
    assert 0 < rows[("xstest", "all")]["positives"] < 12  # both classes in the slice
    assert any(r["set"] == "multijail" and r["group"] != "all" for r in report["rows"])  # languages
    assert all(r["recall"] is None or 0.0 <= r["recall"] <= 1.0 for r in report["rows"])


def test_train_on_the_seed_examples_writes_calibrated_heads(tmp_path: Path) -> None:
    """`railguard classifiers train --seed-only` end to end (MiniLM: the quick encoder), heads trained on
    both precisions' embeddings; the shipped artefacts are left alone."""
    artifacts = tmp_path / "artifacts"
    code = main(["classifiers", "train", "--seed-only", "--encoder", "minilm-l6", "--epochs", "10",
                 "--artifacts-dir", str(artifacts)])  # fmt: skip
    assert code == 0
    calibration = json.loads((artifacts / "calibration.json").read_text())
    assert (artifacts / "heads.npz").is_file()
    assert calibration["info"]["options"]["both_precisions"] is True
    assert calibration["info"]["sources"] == ["seed"]
    unsafe = calibration["info"]["validation"]["unsafe"]
    assert unsafe["positives"] > 100 and unsafe["auprc"] > 0.8  # learned, not chance (~0.5)
    assert 0.05 <= calibration["thresholds"]["unsafe"] <= 0.95
