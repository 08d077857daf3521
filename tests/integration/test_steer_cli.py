"""`railguard steer extract` and `eval` on the embedded model, cut small (2 optimisation steps, 4 prompts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from railguard.cli import _steer as main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CACHE_DIR = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))


@pytest.fixture(scope="module", autouse=True)
def model_ready() -> None:
    """The CLI reads the converted model from the cache (`railguard prepare` makes it; so does this)."""
    from gateway.backends.local.convert import ensure_model
    from gateway.settings import LocalModelConfig

    ensure_model(LocalModelConfig(), CACHE_DIR)


def test_extract_learns_a_conditional_vector_that_eval_and_list_read(tmp_path: Path, capsys) -> None:
    small = ["--tune-prompts", "4", "--max-new-tokens", "4", "--scales", "1"]
    assert main(["extract", "tiny", "--steps", "2", "--out", str(tmp_path), *small]) == 0
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["layers"] == [6] and meta["scale"] == 1.0 and meta["model"] == "gemma-3-270m"
    assert meta["method"]["kind"].startswith("learned") and meta["method"]["steps"] == 2
    assert 0 <= meta["condition"]["layer"] < 18 and -1 <= meta["condition"]["threshold"] <= 1
    assert len(meta["evaluation"]["sweep_on_tuning_prompts"]) == 2  # the baseline and one candidate
    capsys.readouterr()
    assert (
        main(["eval", "tiny", "--dir", str(tmp_path), "--limit", "2", "--max-new-tokens", "4", "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report) == {"vector", "baseline", "steered", "unconditional"}
    assert main(["list", "--dir", str(tmp_path)]) == 0
    assert "tiny\tmodel=gemma-3-270m\tlayers=6" in capsys.readouterr().out


def test_a_bad_filter_is_a_message_not_a_traceback(tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt,label\nhello,safe\n")
    code = main(["eval", "refusal", "--harmful", str(prompts), "--harmful-where", "kind=x", "--limit", "1"])
    assert code == 2 and "no column 'kind'" in capsys.readouterr().err
