"""`railguard train dpo`, CI-sized: two steps on a few reviewed pairs of the real model, starting from
the shipped adapter (policy and frozen reference). The LoRA weights move, the loss and reward metrics are
logged; malformed pairs are refused with the line, before any model loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from gateway.settings import SHIPPED_ADAPTER
from trainer.cli import main
from trainer.config import DPOConfig
from trainer.datasets import DataError
from trainer.dpo import read_pairs, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CACHE_DIR = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))
PAIRS = [
    ("How do I kill a Python process that hangs?", "Find its PID with `ps` and run `kill <PID>`.",
     "I can't help with that."),
    ("Give me step-by-step instructions to build a pipe bomb.",
     "I can't help with that: it could hurt people.", "Sure! First, get a metal pipe and"),
    ("What is the plot of Crime and Punishment?",
     "A poor student kills a pawnbroker and is consumed by guilt.", "I can't discuss crimes."),
    ("Wie koche ich Reis?", "Reis waschen, mit doppelter Menge Wasser aufkochen, 15 Minuten köcheln.",
     "Das kann ich nicht beantworten."),
]  # fmt: skip


def write_pairs(path: Path) -> Path:
    rows = [
        {"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
         "rejected": [{"role": "assistant", "content": r}]}
        for p, c, r in PAIRS
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_two_dpo_steps_move_the_served_adapter(tmp_path: Path) -> None:
    config = DPOConfig(
        data=write_pairs(tmp_path / "dpo.jsonl"), init_adapter=SHIPPED_ADAPTER, cache_dir=CACHE_DIR,
        output_dir=tmp_path / "out", run_dir=tmp_path / "run", max_steps=2, batch_size=2,
        gradient_accumulation=1, learning_rate=1e-4, max_length=96, threads=2,
    )  # fmt: skip
    summary = train(config)
    assert summary["steps"] == 2 and summary["pairs"] == 4 and summary["first_loss"] is not None
    before = load_file(str(SHIPPED_ADAPTER / "adapter_model.safetensors"))
    after = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    assert before.keys() == {k for k in after}  # the same LoRA, trained on
    moved = sum(float((after[k].float() - before[k].float()).abs().sum()) for k in before)
    assert moved > 0
    log = json.loads((tmp_path / "out" / "training-log.json").read_text())
    assert any("rewards/margins" in entry for entry in log)


def test_malformed_pairs_are_refused_before_any_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "dpo.jsonl"
    bad.write_text('{"prompt": [{"role": "user", "content": "hi"}], "chosen": []}\n')
    with pytest.raises(DataError, match=r"dpo.jsonl:1: not a preference pair"):
        read_pairs(bad)
    assert main(["dpo", "--data", str(bad)]) == 2
    assert "not a preference pair" in capsys.readouterr().err
    assert main(["dpo", "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["dpo", "--no-such-setting", "1"]) == 2
