"""An encoder without trained heads is refused before anything is built, and one that is not built is
not built by ``SafetyClassifier.open``: each with a message saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifiers import ClassifiersConfig, SafetyClassifier
from classifiers.cli import main


def test_an_encoder_without_heads_is_refused_before_building(tmp_path: Path) -> None:
    config = ClassifiersConfig(encoder="e5-small-6", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="railguard classifiers train --encoder e5-small-6"):
        SafetyClassifier.load(config)
    assert not (tmp_path / "cache").exists()  # nothing built for it


def test_open_never_builds(tmp_path: Path) -> None:
    config = ClassifiersConfig(cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="railguard classifiers build --encoder e5-small"):
        SafetyClassifier.open(config)
    assert not (tmp_path / "cache").exists()  # nothing built


def test_the_cli_says_so_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "artifacts"
    empty.mkdir()
    assert main(["classify", "--artifacts-dir", str(empty), "--cache-dir", str(tmp_path), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no trained heads") and "Traceback" not in err
