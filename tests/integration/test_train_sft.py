"""`railguard train sft`, CI-sized: a few steps on a few conversations of the real model.

The full run (trainer/configs/assistant.yaml) is documented in the adapter's model card; this proves the
same code path: the loss falls, the LoRA weights change, a stopped run resumes from its checkpoint and
the same seed gives the same adapter."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from trainer.config import SFTConfig, load_config
from trainer.sft import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("RAILGUARD_CACHE_DIR", Path.home() / ".cache" / "railguard"))
CONVERSATIONS = [
    ("Hi there!", "Hello! How can I help you today?"),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Name three primary colours.", "Red, yellow and blue."),
    ("How many days are in a week?", "A week has seven days."),
    ("Say thank you in German.", 'In German, thank you is "Danke".'),
    ("What is 12 times 3?", "12 times 3 is 36."),
]


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demos")
    lines = [
        json.dumps(
            {
                "lang": "en",
                "kind": "fact",
                "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            }
        )
        for q, a in CONVERSATIONS
    ]
    (root / "en.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def small(demos: Path, tmp: Path, name: str, **overrides: str) -> SFTConfig:
    settings = {
        "demos_dir": str(demos),
        "topics_file": str(ROOT / "trainer/data/instructions/topics.jsonl"),
        "data_dir": str(ROOT.parent / "shared" / "data"),
        "instruction_examples": "2",
        "alpaca_examples": "0",
        "hh_rlhf_refusals": "0",
        "demo_repeats": "1",
        "validation_share": "0",
        "cache_dir": str(CACHE_DIR),
        "batch_size": "4",
        "gradient_accumulation": "1",
        "learning_rate": "0.002",
        "warmup_ratio": "0",
        "epochs": "20",
        "logging_steps": "1",
        "save_steps": "3",
        "threads": "2",
        "output_dir": str(tmp / name / "adapter"),
        "run_dir": str(tmp / name / "run"),
        **overrides,
    }
    return load_config(SFTConfig, None, settings)


def test_a_few_steps_lower_the_loss_change_the_lora_weights_and_resume(demos, tmp_path):
    first = train(small(demos, tmp_path, "a", max_steps="3"))
    assert first.steps == 3 and first.resumed_from is None
    assert (tmp_path / "a" / "run" / "checkpoint-3").is_dir()

    resumed = train(small(demos, tmp_path, "a", max_steps="6"))
    assert resumed.steps == 6
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-3")
    log = json.loads((tmp_path / "a" / "adapter" / "training-log.json").read_text())
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert len(losses) == 6  # three from the first run, restored with its checkpoint, three after
    assert losses[-1] < 0.7 * losses[0]

    weights = load_file(str(tmp_path / "a" / "adapter" / "adapter_model.safetensors"))
    lora_b = [t for name, t in weights.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: any value is learned
    summary = json.loads((tmp_path / "a" / "adapter" / "run-summary.json").read_text())["summary"]
    assert summary["peak_rss_mb"] > 0 and summary["wall_time_s"] > 0
    manifest = json.loads((tmp_path / "a" / "adapter" / "dataset-manifest.json").read_text())
    assert manifest["train"]["by_source"] == {"demos": 6, "instructions": 2}
    assert (tmp_path / "a" / "adapter" / "loss.png").stat().st_size > 1000

    # a second stage trains on from the first's adapter, and its card lists both
    second = train(small(demos, tmp_path, "b", max_steps="2", init_adapter=str(tmp_path / "a" / "adapter")))
    assert second.steps == 2
    card = (tmp_path / "b" / "adapter" / "README.md").read_text()
    assert "\n| 1 | " in card and "\n| 2 | " in card
    polished = load_file(str(tmp_path / "b" / "adapter" / "adapter_model.safetensors"))
    assert polished.keys() == weights.keys()
    assert any((polished[k].float() - weights[k].float()).abs().max() > 0 for k in weights)


def test_the_same_seed_gives_the_same_adapter(demos, tmp_path):
    a = train(small(demos, tmp_path, "x", max_steps="2"))
    b = train(small(demos, tmp_path, "y", max_steps="2"))
    assert a.last_loss == b.last_loss
    wa = load_file(str(tmp_path / "x" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "y" / "adapter" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all((wa[k] - wb[k]).abs().max() < 1e-6 for k in wa)
