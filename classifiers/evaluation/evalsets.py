"""The evaluation-only sets (``SPLITS.md``), read by path. Nothing here is ever trained on.

Each set yields items ``(text, label, group)``; ``task`` says which decision is scored: ``prompt``,
what the chat guard refuses on (``harmful``: any hazard or attack head flagged,
:mod:`classifiers.decision`), or ``openai``, what ``/v1/moderations`` flags (``unsafe`` or any mapped
OpenAI category, per category too).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["EVAL_SETS", "MULTIJAIL_LANGUAGES", "OPENAI_LABELS", "OWN_SETS", "EvalItem", "EvalSet"]

Task = Literal["prompt", "openai"]


@dataclass(frozen=True, slots=True)
class EvalItem:
    text: str
    label: int
    group: str = "all"
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EvalSet:
    name: str
    task: Task
    read: Callable[[Path], Iterator[EvalItem]]
    note: str = ""


def _csv(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield from csv.DictReader(f)


def _xstest(d: Path) -> Iterator[EvalItem]:
    for row in _csv(d / "xstest/xstest_prompts.csv"):
        yield EvalItem(row["prompt"], int(row["label"] == "unsafe"))


OPENAI_LABELS = {
    "S": "sexual",
    "H": "hate",
    "V": "violence",
    "HR": "harassment",
    "SH": "self-harm",
    "S3": "sexual/minors",
    "H2": "hate/threatening",
    "V2": "violence/graphic",
}


def _openai(d: Path) -> Iterator[EvalItem]:
    with gzip.open(d / "openai-moderation-eval/samples-1680.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            flags = {OPENAI_LABELS[k]: int(row[k]) for k in OPENAI_LABELS if k in row}
            yield EvalItem(row["prompt"], int(any(flags.values())), extra=flags)


def _aegis(d: Path) -> Iterator[EvalItem]:
    with (d / "aegis-safety-test/aegis_safety_test_prompts.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield EvalItem(row["prompt"], int(row["label"] == "harmful"))


def _sst(d: Path) -> Iterator[EvalItem]:
    for row in _csv(d / "simplesafetytests/simplesafetytests_test_cases.csv"):
        yield EvalItem(row["prompts_final"], 1, row["harm_area"])


def _harmbench_test(d: Path) -> Iterator[EvalItem]:
    for row in _csv(d / "harmbench/harmbench_behaviors_text_test.csv"):
        yield EvalItem(row["Behavior"], 1, row["SemanticCategory"])


def _jbb_behaviors(d: Path) -> Iterator[EvalItem]:
    for row in _csv(d / "jailbreakbench/jbb_harmful_behaviors.csv"):
        yield EvalItem(row["goal"], 1, row["category"])


def _jbb_attacks(d: Path) -> Iterator[EvalItem]:
    seen: set[str] = set()
    for path in sorted((d / "jailbreakbench/artifacts").rglob("*.json")):
        if path.name == "attack-info.json":
            continue
        method = path.relative_to(d / "jailbreakbench/artifacts").parts[0]
        for jb in json.loads(path.read_text())["jailbreaks"]:
            prompt = jb.get("prompt")
            if prompt and prompt not in seen:
                seen.add(prompt)
                yield EvalItem(prompt, 1, method)


MULTIJAIL_LANGUAGES = ("en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv")


def _multijail(d: Path) -> Iterator[EvalItem]:
    for row in _csv(d / "multijail/MultiJail.csv"):
        for lang in MULTIJAIL_LANGUAGES:
            if row.get(lang, "").strip():
                yield EvalItem(row[lang], 1, lang)


def _deepset_test(d: Path) -> Iterator[EvalItem]:
    with (d / "deepset-prompt-injections/test.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            yield EvalItem(row["text"], int(row["label"]))


def _contrast_heldout(d: Path) -> Iterator[EvalItem]:
    """The held-out fifth of our own contrast pairs (``classifiers/contrast``; never trained on, so
    read from the repository, not ``d``): grouped by language, each hazard and attack as ``extra``."""
    from classifiers.taxonomy import ATTACKS, HAZARD_NAMES
    from classifiers.training.contrast import read_contrast, split_pairs

    _, held_out = split_pairs(read_contrast())
    for item in held_out:
        extra = {name: int(name in item.categories) for name in (*HAZARD_NAMES, *ATTACKS)}
        yield EvalItem(item.text, int(item.harmful), item.lang, extra)


EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet("xstest", "prompt", _xstest, "250 safe prompts that sound unsafe + 200 unsafe"),
    EvalSet("openai_moderation", "openai", _openai, "1,680 prompts, 8 category flags"),
    EvalSet("aegis", "prompt", _aegis, "359 prompts, harmful/unharmful"),
    EvalSet("simplesafetytests", "prompt", _sst, "100 harmful prompts"),
    EvalSet("harmbench_test", "prompt", _harmbench_test, "320 behaviours (prompt text only)"),
    EvalSet("jailbreakbench", "prompt", _jbb_behaviors, "100 harmful behaviours (goal)"),
    EvalSet("jailbreakbench_attacks", "prompt", _jbb_attacks, "attack prompts, deduplicated"),
    EvalSet("multijail", "prompt", _multijail, "315 harmful prompts x 10 languages"),
    EvalSet("deepset_test", "prompt", _deepset_test, "116 prompts, injection vs legitimate"),
    EvalSet("contrast_heldout", "prompt", _contrast_heldout, "our held-out contrast pairs, 12 languages"),
)
OWN_SETS = frozenset({"contrast_heldout"})  # ours: not references to decontaminate our own data against
