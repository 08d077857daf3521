"""Evaluation suites: items that say in advance what the system should do.

An item is a conversation (one prompt or several turns) with its ``expected`` behaviour (``comply``,
``refuse``, ``clarify``, ``safe_completion``), a category, a language, a severity (1 low .. 3 high) and
its source. Suites over ``../shared/data`` read the evaluation-only sets by path (never copied here);
the suites written in this repository live in ``evaluation/items/*.jsonl``. ``redteam`` applies the
attack transforms (:mod:`evaluation.transforms`) to harmful seed prompts.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from classifiers.evaluation.evalsets import MULTIJAIL_LANGUAGES
from evaluation.transforms import TRANSFORMS

Expected = Literal["comply", "refuse", "clarify", "safe_completion"]
EXPECTED: tuple[Expected, ...] = ("comply", "refuse", "clarify", "safe_completion")
WRITTEN = Path(__file__).parent / "items"


class SuiteError(ValueError):
    """An unknown suite, a missing data set or a malformed item: the message says which."""


@dataclass(frozen=True)
class Item:
    id: str
    suite: str
    messages: tuple[dict[str, str], ...]
    expected: Expected
    category: str = "none"
    language: str = "en"
    severity: int = 2
    source: str = ""
    transform: str = "none"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "suite": self.suite,
            "messages": list(self.messages),
            "expected": self.expected,
            "category": self.category,
            "language": self.language,
            "severity": self.severity,
            "source": self.source,
            "transform": self.transform,
        }


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    load: Callable[[Path | None], list[Item]]
    needs_data: bool = True


def _id(suite: str, *parts: str) -> str:
    return f"{suite}:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _user(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def _csv(path: Path) -> Iterator[dict[str, str]]:
    if not path.is_file():
        raise SuiteError(f"{path} is missing (is ../shared/data beside the repository?)")
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield from csv.DictReader(f)


def _need(data: Path | None) -> Path:
    if data is None:
        raise SuiteError("this suite reads ../shared/data: pass --data-dir or put it beside the repository")
    return data


def harmbench(data: Path | None, split: str = "test") -> list[Item]:
    name = f"harmbench-{split}"
    return [
        Item(
            _id(name, row["BehaviorID"]),
            name,
            _user(row["Behavior"]),
            "refuse",
            row["SemanticCategory"],
            source=f"harmbench/{split}",
        )
        for row in _csv(_need(data) / f"harmbench/harmbench_behaviors_text_{split}.csv")
        if row["FunctionalCategory"] == "standard"  # contextual ones need their context string
    ]


def xstest(data: Path | None) -> list[Item]:
    return [
        Item(
            _id("xstest", row["id"]),
            "xstest",
            _user(row["prompt"]),
            "refuse" if row["label"] == "unsafe" else "comply",
            row["type"],
            source="xstest",
        )
        for row in _csv(_need(data) / "xstest/xstest_prompts.csv")
    ]


def multijail(data: Path | None) -> list[Item]:
    items = []
    for row in _csv(_need(data) / "multijail/MultiJail.csv"):
        tags = row.get("tags", "").strip("[]'\" ").split("'")[0] or "harmful"
        category = tags.lower().replace(" & ", "_").replace(" ", "_")
        for lang in MULTIJAIL_LANGUAGES:
            if row.get(lang, "").strip():
                items.append(
                    Item(
                        _id("multijail", row["id"], lang),
                        "multijail",
                        _user(row[lang]),
                        "refuse",
                        category,
                        lang,
                        source="multijail",
                    )
                )
    return items


def jailbreakbench(data: Path | None) -> list[Item]:
    """JailbreakBench's attack artifacts (PAIR, GCG, JBC, ...), each prompt once."""
    root = _need(data) / "jailbreakbench/artifacts"
    if not root.is_dir():
        raise SuiteError(f"{root} is missing")
    items, seen = [], set()
    for path in sorted(root.rglob("*.json")):
        if path.name == "attack-info.json":
            continue
        method = path.relative_to(root).parts[0]
        for jb in json.loads(path.read_text(encoding="utf-8"))["jailbreaks"]:
            prompt = jb.get("prompt")
            if prompt and prompt not in seen:
                seen.add(prompt)
                items.append(
                    Item(
                        _id("jailbreakbench", prompt),
                        "jailbreakbench",
                        _user(prompt),
                        "refuse",
                        jb.get("category") or "harmful",
                        source=f"jailbreakbench/{method}",
                        transform=method.lower(),
                    )
                )
    return items


# Behaviours whose harm is in the request itself (what an attack transform tries to sneak past a guard);
# misinformation asks for an article, whose harm is in the claims, and is measured by harmbench-test.
REDTEAM_CATEGORIES = (
    "chemical_biological",
    "illegal",
    "cybercrime_intrusion",
    "harassment_bullying",
    "harmful",
)


def redteam(data: Path | None) -> list[Item]:
    """Each attack transform applied to 20 HarmBench test behaviours, 4 from each of its categories whose
    harm is in the request (chemical and biological, illegal, cybercrime, harassment, harmful)."""
    by_category: dict[str, list[Item]] = {}
    for item in harmbench(data):
        by_category.setdefault(item.category, []).append(item)
    seeds = [seed for category in REDTEAM_CATEGORIES for seed in by_category.get(category, [])[:4]]
    items = []
    for seed in seeds:
        for name, transform in TRANSFORMS.items():
            messages = transform(seed.messages[-1]["content"])
            items.append(
                Item(
                    _id("redteam", seed.id, name),
                    "redteam",
                    messages,
                    "refuse",
                    seed.category,
                    severity=3,
                    source=seed.source,
                    transform=name,
                )
            )
    return items


def written(name: str) -> Callable[[Path | None], list[Item]]:
    """A suite from ``evaluation/items/<name>.jsonl``: one item per line, checked strictly."""

    def load(_: Path | None) -> list[Item]:
        path = WRITTEN / f"{name}.jsonl"
        items = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    items.append(parse_item(name, json.loads(line)))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    raise SuiteError(f"{path}:{number}: {exc}") from None
        return items

    return load


def parse_item(suite: str, row: Any) -> Item:
    if not isinstance(row, dict):
        raise ValueError("an item is a JSON object")
    messages = row.get("messages") or (
        [{"role": "user", "content": row["prompt"]}] if "prompt" in row else None
    )
    if not messages or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        raise ValueError("an item needs `prompt` or `messages` with string contents")
    if messages[-1].get("role") != "user":
        raise ValueError("the last message must be the user's")
    if row.get("expected") not in EXPECTED:
        raise ValueError(f"`expected` must be one of {', '.join(EXPECTED)}")
    severity = int(row.get("severity", 2))
    if not 1 <= severity <= 3:
        raise ValueError("`severity` is 1, 2 or 3")
    key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    return Item(
        row.get("id") or _id(suite, key),
        suite,
        tuple(messages),
        row["expected"],
        row.get("category", "none"),
        row.get("language", "en"),
        severity,
        row.get("source", suite),
    )


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("harmbench-test", "HarmBench test behaviours (standard): should be refused", harmbench),
        Suite("xstest", "XSTest: 250 safe prompts that sound unsafe (comply), 200 unsafe (refuse)", xstest),
        Suite("multijail", "MultiJail: 315 harmful prompts in 10 languages (refuse)", multijail),
        Suite(
            "jailbreakbench", "JailbreakBench attack artifacts (PAIR, GCG, JBC, ...): refuse", jailbreakbench
        ),
        Suite("redteam", "14 attack transforms on 20 HarmBench test behaviours: refuse", redteam),
        Suite(
            "escalation", "multi-turn escalation and late harmful turns (ours)", written("escalation"), False
        ),
        Suite(
            "regulated-advice",
            "medical, legal, financial boundaries (ours)",
            written("regulated-advice"),
            False,
        ),
    )
}


def load(names: list[str], data: Path | None, limit: int | None = None) -> list[Item]:
    """The items of ``names``, at most ``limit`` per suite (stratified, not the suite's head)."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise SuiteError(f"unknown suite {', '.join(unknown)}; known: {', '.join(SUITES)}")
    items: list[Item] = []
    for name in names:
        suite_items = SUITES[name].load(data)
        if limit is not None and len(suite_items) > limit:
            suite_items = stratified(suite_items, limit)
        items += suite_items
    return items


def stratified(items: list[Item], limit: int) -> list[Item]:
    """``limit`` items taken in turn from each (language, transform, expected) group, each group's
    spread over it: every language and attack of a suite is represented, not the first few."""
    groups: dict[tuple[str, str, str], list[Item]] = {}
    for item in items:
        groups.setdefault((item.language, item.transform, item.expected), []).append(item)
    queues = [_spread(group) for group in groups.values()]
    chosen: list[Item] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    order = {id(item): i for i, item in enumerate(items)}
    return sorted(chosen, key=lambda item: order[id(item)])


def _spread(group: list[Item]) -> list[Item]:
    """The group reordered so that any prefix is spread over it (halving intervals)."""
    out: list[Item] = []
    seen: set[int] = set()
    step = len(group)
    while len(out) < len(group):
        for i in range(0, len(group), max(1, step)):
            if i not in seen:
                seen.add(i)
                out.append(group[i])
        step //= 2
    return out
