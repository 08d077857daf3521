"""Prompt sets (the shipped contrastive sets, or files read by path) and chat formatting.

Shipped sets live in `steering/data/*.txt`: one prompt per line, `#` starts a comment, and a line
starting with `# held-out` separates the prompts used to make and tune a vector from those kept for
its evaluation. Other files: `.txt` (one per line), `.csv` (column `goal`, `prompt` or the first),
`.jsonl` (field `prompt` or `text`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

__all__ = ["DATA_DIR", "PromptSet", "chat_prompt", "read_prompts", "shipped"]

DATA_DIR = Path(str(files("steering").joinpath("data")))

# The turns of railguard's default chat template (gateway/defaults/chat_template.jinja) for one user
# message; a test keeps the two in step. Models that bring their own template use it instead.
_GEMMA_TURN = "<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n"


@dataclass(frozen=True)
class PromptSet:
    tune: tuple[str, ...]  # to make the vector and pick its layer and scale
    held_out: tuple[str, ...]  # for its evaluation only


def shipped(name: str) -> PromptSet:
    """`harmful`, `harmless` or `ordinary` from `steering/data`."""
    return read_prompts(DATA_DIR / f"{name}.txt")


def read_prompts(path: Path, where: tuple[str, str] | None = None) -> PromptSet:
    """`where=(column, value)` keeps only the rows of a `.csv` or `.jsonl` file whose column has the value."""
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        column = next((c for c in ("goal", "prompt", "text") if rows and c in rows[0]), None)
        rows = _filtered(rows, where, path)
        texts = [str(r[column] if column else next(iter(r.values()))) for r in rows]
        return PromptSet(tuple(t for t in texts if t.strip()), ())
    if path.suffix == ".jsonl":
        records: list[dict[str, Any]] = [
            json.loads(line) for line in path.open(encoding="utf-8") if line.strip()
        ]
        records = _filtered(records, where, path)
        texts = [str(r.get("prompt") or r.get("text") or "") for r in records]
        return PromptSet(tuple(t for t in texts if t.strip()), ())
    if where is not None:
        raise ValueError(f"{path}: a filter applies to .csv and .jsonl files only")
    tune: list[str] = []
    held_out: list[str] = []
    current = tune
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# held-out"):
            current = held_out
        elif line.strip() and not line.startswith("#"):
            current.append(line.strip())
    return PromptSet(tuple(tune), tuple(held_out))


def _filtered(rows: list[dict[str, Any]], where: tuple[str, str] | None, path: Path) -> list[dict[str, Any]]:
    if where is None:
        return rows
    column, value = where
    if rows and column not in rows[0]:
        raise ValueError(f"{path} has no column {column!r}")
    return [r for r in rows if str(r.get(column)) == value]


def chat_prompt(tokenizer: Any, text: str) -> str:
    """One user message as the gateway would present it to the model, ready for generation."""
    template = getattr(tokenizer, "chat_template", None)
    if template:
        rendered: str = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        return rendered
    return (tokenizer.bos_token or "") + _GEMMA_TURN.format(prompt=text.strip())
