"""The evaluation path end to end on a few items of the real sets (skipped without ../shared/data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from classifiers import ClassifiersConfig, SafetyClassifier
from classifiers.cli import default_data_dir, main
from classifiers.training.calibration import MAX_FPR

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = default_data_dir()


@pytest.mark.skipif(DATA is None, reason="no ../shared/data beside the repository")
def test_eval_slice_writes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    code = main(["classifiers", "eval", "--limit", "12", "--sets", "xstest", "multijail",
                 "deepset_test", "--obfuscated", "5", "--json", str(out)])  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert table.startswith("| set | group |") and "| multijail | all |" in table
    assert "| recall, obfuscated | FPR, obfuscated |" in table.splitlines()[0]
    report = json.loads(out.read_text())
    assert report["limit"] == 12 and report["precision"] == ClassifiersConfig().precision
    assert report["obfuscated"]["per_set"] == 5 and len(report["obfuscated"]["obfuscations"]) == 14
    rows = {(r["set"], r["group"]): r for r in report["rows"]}
    assert rows[("xstest", "all")]["n"] == 12
    assert 0 < rows[("xstest", "all")]["positives"] < 12  # both classes in the slice
    assert any(r["set"] == "multijail" and r["group"] != "all" for r in report["rows"])  # languages
    assert all(r["recall"] is None or 0.0 <= r["recall"] <= 1.0 for r in report["rows"])
    # the "all" rows: 5 harmful and up to 5 benign items dressed, scored as serving reads them
    xstest, multijail = rows[("xstest", "all")]["obfuscated"], rows[("multijail", "all")]["obfuscated"]
    assert xstest["n"] == 5 and 0 < xstest["benign_n"] <= 5 and 0.0 <= xstest["recall"] <= 1.0
    assert multijail["n"] == 5 and multijail["benign_n"] == 0 and multijail["fpr"] is None  # harmful only
    assert list(xstest["by_obfuscation"]) == ["zero_width_between", "zero_width_inside", "joiners",
                                              "soft_hyphens", "homoglyphs"]  # fmt: skip
    assert all("obfuscated" not in r for r in report["rows"] if r["group"] != "all")


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


# The int8 encoder is built on the machine that runs it, and its scores differ between machines in the
# 4th decimal (torch's fp32 kernels differ by CPU: AVX2, AVX-512, VNNI; SmoothQuant's maxima and the
# int8 scales follow them). The calibration rule shares one false-positive budget among all heads, so
# such a difference moves single heads' thresholds far (2026-12-06, an AVX-512 VNNI machine: hate
# 0.9074 -> 0.9432, prompt_injection 0.9481 -> 0.8042) while the guard's decision stays where it was:
# that decision (any head flags: recall, false-positive rate, AUPRC on validation) is what must
# reproduce, within a few examples, and under the cap. Any change to the rule moves it by far more.
DECISION_TOLERANCE = {"recall": 0.02, "fpr": 0.005, "auprc": 0.005}


def assert_same_decision(ours: dict[str, Any], theirs: dict[str, Any], where: str) -> None:
    mine, shipped = ours["info"]["validation"]["harmful"], theirs["info"]["validation"]["harmful"]
    assert (mine["n"], mine["positives"]) == (shipped["n"], shipped["positives"]), f"{where}: other data"
    for metric, tolerance in DECISION_TOLERANCE.items():
        assert mine[metric] == pytest.approx(shipped[metric], abs=tolerance), f"{where}.{metric}"
    assert mine["fpr"] <= MAX_FPR["unsafe"] + 1e-9, where
    assert ours["thresholds"].keys() == theirs["thresholds"].keys(), where


def test_assert_same_decision_catches_a_moved_operating_point() -> None:
    shipped = json.loads((ClassifiersConfig().trained_dir / "calibration.json").read_text())
    assert_same_decision(shipped, shipped, "shipped")
    moved = json.loads(json.dumps(shipped))
    moved["info"]["validation"]["harmful"]["recall"] -= 0.03
    with pytest.raises(AssertionError, match=r"moved\.recall"):
        assert_same_decision(moved, shipped, "moved")


@pytest.mark.skipif(DATA is None, reason="no ../shared/data beside the repository")
def test_calibrate_reproduces_the_shipped_thresholds(tmp_path: Path) -> None:
    """`railguard classifiers calibrate` on a copy of the shipped e5-small parts gives the shipped
    guard decision again on validation (recall, false-positive rate under the cap: what the command
    makes from the repository and ../shared/data, up to this machine's int8 build), leaves the heads
    alone, and the files it writes load together."""
    shipped = ClassifiersConfig().trained_dir
    artifacts = tmp_path / "e5-small"
    shutil.copytree(shipped, artifacts)
    stale = json.loads((shipped / "calibration.json").read_text())
    (artifacts / "calibration.json").write_text(json.dumps({**stale, "thresholds": {}}))
    heads = (artifacts / "heads.npz").read_bytes()
    assert main(["classifiers", "calibrate", "--artifacts-dir", str(artifacts)]) == 0
    ours = json.loads((artifacts / "calibration.json").read_text())
    theirs = json.loads((shipped / "calibration.json").read_text())
    assert_same_decision(ours, theirs, "calibration.json")
    assert (artifacts / "heads.npz").read_bytes() == heads
    # the early exits' thresholds and margins are recalibrated too (their heads kept)
    for name in (
        "exit3/calibration.json",
        "exit6/calibration.json",
        "calibration+exit3.json",
        "calibration+exit6.json",
    ):
        mine, shipped_exit = (
            json.loads((artifacts / name).read_text()),
            json.loads((shipped / name).read_text()),
        )
        if "thresholds" in shipped_exit and "harmful" in shipped_exit["info"]["validation"]:
            assert_same_decision(mine, shipped_exit, name)
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
    from classifiers.training.labels import HH_RLHF_LABELS, hh_rlhf_prompts, labelled_texts, read_labels
    from classifiers.training.manifest import OPTIONAL_SOURCES

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
    from classifiers.training.labels import HH_RLHF_LABELS, read_labels, with_exclusions, write_labels

    copy = tmp_path / "labels.tsv"
    write_labels(copy, with_exclusions(read_labels(HH_RLHF_LABELS), {}), "cleared")
    assert not any(x.excluded for x in read_labels(copy))
    assert main(["classifiers", "decontaminate", "--labels", str(copy)]) == 0
    assert copy.read_bytes() == HH_RLHF_LABELS.read_bytes()
    assert "135 of 2178 rows excluded" in capsys.readouterr().out
