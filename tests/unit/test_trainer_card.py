"""The model card's history of stages: found through `init_adapter`, kept in each run's summary
(`earlier`) so an adapter copied away from its predecessors still tells it, and never walked in a loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.card import stages, write_card


def run(steps: int, init: str | None) -> dict[str, Any]:
    return {
        "config": {"init_adapter": init, "epochs": 1.0, "learning_rate": 0.0002, "lora_r": 16},
        "summary": {"steps": steps, "train_examples": 10, "first_loss": 2.0, "last_loss": 1.0,
                    "validation_loss": 1.5, "wall_time_s": 60.0, "peak_rss_mb": 1024.0},
        "manifest": {"sources": {"demos": {"conversations": 10}}, "demo_repeats": 1, "train_tokens": 999,
                     "train": {"by_language": {"en": 10}}},
        "file": f"stage-{steps}.yaml",
    }  # fmt: skip


def save(directory: Path, stage: dict[str, Any], earlier: list[dict[str, Any]] | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    summary = {"summary": stage["summary"], "config": stage["config"], "config_file": stage["file"]}
    if earlier is not None:
        summary["earlier"] = earlier
    (directory / "run-summary.json").write_text(json.dumps(summary))
    (directory / "dataset-manifest.json").write_text(json.dumps(stage["manifest"]))


def test_a_shipped_adapter_keeps_its_history_when_the_earlier_stages_are_gone(tmp_path: Path) -> None:
    first, second = run(100, None), run(200, str(tmp_path / "stage1"))
    save(tmp_path / "stage1", first)
    chain = stages(second["config"], second["summary"], second["manifest"], second["file"])
    assert [s["summary"]["steps"] for s in chain] == [100, 200]
    save(tmp_path / "shipped", second, earlier=chain[:-1])  # what the trainer writes
    (tmp_path / "stage1" / "run-summary.json").unlink()  # a fresh machine: the cache is gone
    third = run(300, str(tmp_path / "shipped"))
    chain = stages(third["config"], third["summary"], third["manifest"], third["file"])
    assert [s["summary"]["steps"] for s in chain] == [100, 200, 300]
    write_card(tmp_path, third["config"], third["summary"], third["manifest"], third["file"], chain[:-1])
    card = (tmp_path / "README.md").read_text()
    assert "in 3 stages" in card and "| 3 | demos 10" in card and "stage-100.yaml" in card


def test_an_adapter_trained_into_the_directory_it_started_from_is_not_walked_twice(tmp_path: Path) -> None:
    looped = run(100, str(tmp_path / "same"))
    save(tmp_path / "same", looped)
    chain = stages(looped["config"], looped["summary"], looped["manifest"], looped["file"])
    assert [s["summary"]["steps"] for s in chain] == [100, 100]  # itself once, then the walk stops
