"""The evaluation path end to end on a few items of the real sets (skipped without ../shared/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from classifiers import ClassifiersConfig, SafetyClassifier
from classifiers.cli import default_data_dir, main
from classifiers.train import MAX_FPR

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
    assert 0.05 <= calibration["thresholds"]["unsafe"] < 1.0
    harmful = calibration["info"]["validation"]["harmful"]  # the guard's decision, any head
    assert harmful["fpr"] <= MAX_FPR["unsafe"] and harmful["shift"] >= 0.0


# ONNX Runtime picks its kernels by the CPU's instruction sets (AVX2, AVX-512, VNNI), and their
# rounding differs, so scores, and the thresholds picked among them, can differ between machines in
# the 4th decimal (2026-12-03: a threshold shipped as 0.7543 came out 0.7542 on an AVX-512 VNNI
# machine). Any change to the calibration rule moves them by far more.
CPU_NOISE = 0.002


def assert_recalibrated(ours: object, theirs: object, where: str = "") -> None:
    """``ours`` equals ``theirs`` up to ``CPU_NOISE`` in every number; digests of other files are
    left out (they follow the numbers: :func:`test_calibrate_reproduces_the_shipped_thresholds`
    loads the result, which checks them)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), where
        for key in theirs:
            if key not in ("next", "full_heads"):
                assert_recalibrated(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_recalibrated(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float | int) and not isinstance(theirs, bool):
        assert ours == pytest.approx(theirs, abs=CPU_NOISE), where
    else:
        assert ours == theirs, where


def test_assert_recalibrated_catches_a_moved_threshold() -> None:
    shipped = json.loads((ClassifiersConfig().trained_dir / "calibration.json").read_text())
    assert_recalibrated(shipped, shipped)
    moved = json.loads(json.dumps(shipped))
    moved["thresholds"]["hate"] += 0.01
    with pytest.raises(AssertionError, match=r"\.thresholds\.hate"):
        assert_recalibrated(moved, shipped)


@pytest.mark.skipif(DATA is None, reason="no ../shared/data beside the repository")
def test_calibrate_reproduces_the_shipped_thresholds(tmp_path: Path) -> None:
    """`railguard classifiers calibrate` on a copy of the shipped e5-small parts writes the shipped
    thresholds again (they are what the command makes from the repository and ../shared/data, up to
    the CPU's int8 rounding), leaves the heads alone, and keeps the guard's decision within the cap on
    validation; the files it writes load together."""
    shipped = ClassifiersConfig().trained_dir
    artifacts = tmp_path / "e5-small"
    shutil.copytree(shipped, artifacts)
    stale = json.loads((shipped / "calibration.json").read_text())
    (artifacts / "calibration.json").write_text(json.dumps({**stale, "thresholds": {}}))
    heads = (artifacts / "heads.npz").read_bytes()
    assert main(["classifiers", "calibrate", "--artifacts-dir", str(artifacts)]) == 0
    ours = json.loads((artifacts / "calibration.json").read_text())
    theirs = json.loads((shipped / "calibration.json").read_text())
    assert_recalibrated(ours["thresholds"], theirs["thresholds"], "thresholds")
    assert ours["info"]["validation"]["harmful"]["fpr"] <= MAX_FPR["unsafe"]
    assert (artifacts / "heads.npz").read_bytes() == heads
    # the early exits' thresholds and margins are recalibrated too (their heads kept): the shipped ones
    for name in (
        "exit3/calibration.json",
        "calibration+exit3.json",
        "exit6/calibration.json",
        "calibration+exit6.json",
    ):
        assert_recalibrated(
            json.loads((artifacts / name).read_text()), json.loads((shipped / name).read_text()), name
        )
    for name in ("exit3/heads.npz", "exit6/heads.npz"):
        assert (artifacts / name).read_bytes() == (shipped / name).read_bytes(), name
    # each earlier exit names the files of the one after it: the new set loads as a whole
    with SafetyClassifier.load(ClassifiersConfig(artifacts_dir=artifacts)) as classifier:
        assert classifier.early_exit is not None
        [scores] = classifier.score(["How do I make a pipe bomb?"])
        assert scores.harmful


def test_calibrate_is_for_one_encoder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classifiers", "calibrate", "--fuse", "gemma-probe", "--seed-only"]) == 2
    assert "calibrate-fusion --fuse" in capsys.readouterr().err


def test_calibrate_refuses_heads_of_another_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Stale heads (trained on another build of the encoder) get no new thresholds: exit 2, file kept."""
    artifacts = tmp_path / "e5-small"
    shutil.copytree(ClassifiersConfig().trained_dir, artifacts)
    stale = {**json.loads((artifacts / "calibration.json").read_text()), "encoder": "e5-small-other"}
    (artifacts / "calibration.json").write_text(json.dumps(stale))
    assert main(["classifiers", "calibrate", "--seed-only", "--artifacts-dir", str(artifacts)]) == 2
    assert "retrain them" in capsys.readouterr().err
    assert json.loads((artifacts / "calibration.json").read_text()) == stale


@pytest.mark.skipif(DATA is None, reason="no ../shared/data beside the repository")
def test_hh_rlhf_labels_fit_the_data() -> None:
    """The shipped labels are for the texts of ../shared/data's hh-rlhf (every digest matches); the
    rows near an evaluation text are left out (the next test finds them again)."""
    from classifiers.labels import HH_RLHF_LABELS, hh_rlhf_prompts, labelled_texts, read_labels
    from classifiers.manifest import OPTIONAL_SOURCES

    assert DATA is not None
    labels = read_labels(HH_RLHF_LABELS)
    assert len(list(labelled_texts(hh_rlhf_prompts(DATA), labels))) == len({x.row for x in labels}) > 2000
    excluded = [x.excluded for x in labels if x.excluded]
    assert {"near-duplicate of multijail", "near-duplicate of aegis"} <= set(excluded)
    examples = list(OPTIONAL_SOURCES["hh-rlhf"].read(DATA))
    assert len(examples) == sum(x.trains for x in labels)
    assert sum(e.labels.get("unsafe", 0) for e in examples) > 1000


@pytest.mark.skipif(DATA is None, reason="no ../shared/data beside the repository")
def test_decontaminate_writes_the_shipped_labels_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`railguard classifiers decontaminate` on a copy with every exclusion cleared marks the same rows."""
    from classifiers.labels import HH_RLHF_LABELS, read_labels, with_exclusions, write_labels

    copy = tmp_path / "labels.tsv"
    write_labels(copy, with_exclusions(read_labels(HH_RLHF_LABELS), {}), "cleared")
    assert not any(x.excluded for x in read_labels(copy))
    assert main(["classifiers", "decontaminate", "--labels", str(copy)]) == 0
    assert copy.read_bytes() == HH_RLHF_LABELS.read_bytes()
    assert "135 of 2178 rows excluded" in capsys.readouterr().out
