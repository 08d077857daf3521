"""IFEval scoring with lm-eval's own checkers, offline.

The checkers split sentences with NLTK's punkt model, which NLTK would download on first use; it cannot
here. `scripts/setup.sh` installs llama-index-core (MIT) without its dependencies for the punkt_tab files
it ships (NLTK's own, byte for byte), and `use_shipped_punkt()` points NLTK at them before lm-eval loads.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["IFEvalItem", "punkt_dir", "read_ifeval", "score", "use_shipped_punkt"]


@dataclass(frozen=True)
class IFEvalItem:
    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]


def punkt_dir() -> Path:
    """NLTK's data folder inside llama-index-core (holding tokenizers/punkt_tab), without importing it."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "NLTK's punkt model is missing: run ./scripts/setup.sh (it installs llama-index-core "
            "--no-deps for its punkt_tab files)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "_static" / "nltk_cache"
    if not (path / "tokenizers" / "punkt_tab" / "english").is_dir():
        raise RuntimeError(f"no tokenizers/punkt_tab/english under {path}")
    return path


def use_shipped_punkt() -> None:
    import nltk

    path = str(punkt_dir())
    if path not in nltk.data.path:
        nltk.data.path.insert(0, path)


def read_ifeval(path: Path, limit: int | None = None) -> list[IFEvalItem]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(
                IFEvalItem(
                    int(raw["key"]), str(raw["prompt"]), list(raw["instruction_id_list"]), list(raw["kwargs"])
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not an IFEval item ({exc})") from None
    return items[:limit] if limit else items


def score(items: list[IFEvalItem], responses: list[str]) -> dict[str, float]:
    """Prompt- and instruction-level accuracy, strict and loose, as lm-eval's IFEval task reports them."""
    use_shipped_punkt()
    from lm_eval.tasks.ifeval.utils import process_results

    totals = {"prompt_strict": 0.0, "prompt_loose": 0.0, "inst_strict": 0.0, "inst_loose": 0.0}
    instructions = 0
    for item, response in zip(items, responses, strict=True):
        doc = {
            "key": item.key,
            "prompt": item.prompt,
            "instruction_id_list": item.instruction_id_list,
            "kwargs": item.kwargs,
        }
        result = process_results(doc, [response])
        totals["prompt_strict"] += float(result["prompt_level_strict_acc"])
        totals["prompt_loose"] += float(result["prompt_level_loose_acc"])
        totals["inst_strict"] += sum(result["inst_level_strict_acc"])
        totals["inst_loose"] += sum(result["inst_level_loose_acc"])
        instructions += len(result["inst_level_strict_acc"])
    n = max(len(items), 1)
    return {
        "prompt_level_strict": totals["prompt_strict"] / n,
        "prompt_level_loose": totals["prompt_loose"] / n,
        "instruction_level_strict": totals["inst_strict"] / max(instructions, 1),
        "instruction_level_loose": totals["inst_loose"] / max(instructions, 1),
    }
