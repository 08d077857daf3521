"""The training manifest: which files train which heads, read by path under ``--data-dir``, beside
the shipped seed examples (:mod:`classifiers.training.seed`); and the split into training and
validation.

Only sets that ``SPLITS.md`` marks *train* appear here (HarmBench: ``*_val.csv`` only; deepset:
``train.*`` only).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from classifiers.taxonomy import UNSAFE
from classifiers.training.labels import HH_RLHF_LABELS, hh_rlhf_prompts, labelled_texts, read_labels
from classifiers.training.seed import Example, label_set, read_seed

__all__ = [
    "OPTIONAL_SOURCES",
    "SOURCES",
    "Source",
    "hh_rlhf_examples",
    "load_training",
    "split",
    "with_sources",
]


def _csv_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield from csv.DictReader(f)


def _jsonl(path: Path) -> Iterator[dict[str, object]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _advbench(d: Path) -> Iterator[Example]:
    for row in _csv_rows(d / "advbench/harmful_behaviors.csv"):
        yield Example(row["goal"], label_set(UNSAFE), "advbench")
    for row in _csv_rows(d / "advbench/harmful_strings.csv"):
        yield Example(row["target"], label_set(UNSAFE), "advbench/strings")


_STRONGREJECT = {
    "Non-violent crimes": "non_violent_crimes",
    "Violence": "violent_crimes",
    "Hate, harassment and discrimination": "hate",
    "Sexual content": "sexual_content",
}


def _strongreject(d: Path) -> Iterator[Example]:
    for row in _csv_rows(d / "strongreject/strongreject_dataset.csv"):
        kind = _STRONGREJECT.get(row["category"], UNSAFE)
        yield Example(row["forbidden_prompt"], label_set(kind), "strongreject")


_HARMBENCH = {
    "copyright": "intellectual_property",
    "cybercrime_intrusion": "non_violent_crimes",
    "chemical_biological": "indiscriminate_weapons",
    "harassment_bullying": "hate",
}


def _harmbench_val(d: Path) -> Iterator[Example]:
    for row in _csv_rows(d / "harmbench/harmbench_behaviors_text_val.csv"):
        kind = _HARMBENCH.get(row["SemanticCategory"], UNSAFE)
        yield Example(row["Behavior"], label_set(kind), "harmbench_val")


_DNA = {
    "discrimination_exclusion_toxicity_hateful_offensive": "hate",
    "information_hazard": "privacy",
    "malicious_uses": UNSAFE,
}  # human_chatbox (questions about the bot) and misinformation_harms are not hazards to flag


def _do_not_answer(d: Path) -> Iterator[Example]:
    for stem, kind in _DNA.items():
        for row in _jsonl(d / f"do-not-answer/{stem}.jsonl"):
            yield Example(str(row["prompt"]), label_set(kind), "do-not-answer")


_XSAFETY = {
    "commonsense": "benign",
    "Crimes_And_Illegal_Activities": UNSAFE,
    "Insult": "hate",
    "Unfairness_And_Discrimination": "hate",
    "Unsafe_Instruction_Topic": UNSAFE,
    "Goal_Hijacking": "prompt_injection",
    "Prompt_Leaking": "prompt_injection",
    "Role_Play_Instruction": "jailbreak",
}
# Left out, after reading them: Physical_Harm (mostly health statements and advice questions),
# Inquiry_With_Unsafe_Opinion and Privacy_And_Property (many ordinary questions), Mental_Health (asks
# for support), Ethics_And_Morality and Reverse_Exposure. Labelled "unsafe" they taught the heads
# that any safety-related topic is harmful.
_XSAFETY_LANG = {"sp": "es"}
XSAFETY_PER_FILE = 60  # keeps 16k machine-translated probes from swamping the rest


def _xsafety(d: Path) -> Iterator[Example]:
    for lang_dir in sorted(p for p in (d / "xsafety").iterdir() if p.is_dir()):
        lang = _XSAFETY_LANG.get(lang_dir.name, lang_dir.name)
        for path in sorted(lang_dir.glob("*.csv")):
            stem = path.stem.removesuffix("_n").removesuffix("_en")
            kind = _XSAFETY.get(stem)
            if kind is None:
                continue
            with path.open(encoding="utf-8-sig", newline="") as f:
                rows = [",".join(cells).strip() for cells in csv.reader(f)]
            limit = 200 if kind == "benign" else XSAFETY_PER_FILE
            for text in [r for r in rows if r][:limit]:
                yield Example(text, label_set(kind), f"xsafety/{stem}", lang)


def _toxicchat(d: Path) -> Iterator[Example]:
    for row in _jsonl(d / "toxicchat-subset/toxicchat_prompts.jsonl"):
        kind = UNSAFE if row["label"] == "harmful" else "benign"
        yield Example(str(row["prompt"]), label_set(kind), "toxicchat")


def _deepset_train(d: Path) -> Iterator[Example]:
    for row in _jsonl(d / "deepset-prompt-injections/train.jsonl"):
        kind = "prompt_injection" if int(str(row["label"])) == 1 else "benign"
        yield Example(str(row["text"]), label_set(kind), "deepset_train")


def _jailbreaks_in_the_wild(d: Path) -> Iterator[Example]:
    texts = json.loads((d / "jailbreak-prompts-in-the-wild/inthewild_jailbreak_llms.json").read_text())
    for text in dict.fromkeys(texts):
        yield Example(str(text), label_set("jailbreak"), "jailbreaks_in_the_wild")


def hh_rlhf_examples(d: Path, labels_path: Path) -> Iterator[Example]:
    """hh-rlhf's first human turns labelled by ``labels_path`` (``skip`` and excluded rows left out)."""
    for label, text in labelled_texts(hh_rlhf_prompts(d), read_labels(labels_path)):
        if label.trains:
            yield Example(text, label_set(label.kind), "hh-rlhf", "en")


def _hh_rlhf(d: Path) -> Iterator[Example]:
    return hh_rlhf_examples(d, HH_RLHF_LABELS)


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    read: Callable[[Path], Iterator[Example]]


SOURCES: tuple[Source, ...] = (
    Source("advbench", _advbench),
    Source("strongreject", _strongreject),
    Source("harmbench_val", _harmbench_val),
    Source("do-not-answer", _do_not_answer),
    Source("xsafety", _xsafety),
    Source("toxicchat", _toxicchat),
    Source("deepset_train", _deepset_train),
    Source("jailbreaks_in_the_wild", _jailbreaks_in_the_wild),
)


def _contrast(d: Path) -> Iterator[Example]:
    from classifiers.training.contrast import examples

    return iter(examples())


# Sources a training run takes only when asked (`--with-source NAME`): measured, not in the default mix.
OPTIONAL_SOURCES: dict[str, Source] = {
    "hh-rlhf": Source("hh-rlhf", _hh_rlhf),
    "contrast": Source("contrast", _contrast),
}


def with_sources(names: tuple[str, ...]) -> tuple[Source, ...]:
    """The default sources plus the optional ones named; an unknown name is a ValueError."""
    unknown = sorted(set(names) - set(OPTIONAL_SOURCES))
    if unknown:
        raise ValueError(f"unknown training source {unknown[0]!r} (optional: {', '.join(OPTIONAL_SOURCES)})")
    return SOURCES + tuple(OPTIONAL_SOURCES[n] for n in names)


def load_training(data_dir: Path | None, sources: tuple[Source, ...] = SOURCES) -> list[Example]:
    """Seed examples plus every manifest source found under ``data_dir`` (deduplicated by text)."""
    examples = list(read_seed())
    if data_dir is not None:
        for source in sources:
            examples.extend(source.read(data_dir))
    seen: set[str] = set()
    unique = []
    for ex in examples:
        key = ex.text.strip()
        if key and key not in seen:
            seen.add(key)
            unique.append(ex)
    return unique


def split(examples: list[Example], val_fraction: float) -> tuple[list[Example], list[Example]]:
    """Deterministic split by a hash of the text: the same text always lands on the same side."""
    train: list[Example] = []
    val: list[Example] = []
    for ex in examples:
        h = int.from_bytes(hashlib.sha1(ex.text.encode(), usedforsecurity=False).digest()[:4], "big") / 2**32
        (val if h < val_fraction else train).append(ex)
    return train, val
