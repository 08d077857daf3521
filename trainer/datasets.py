"""Conversations for supervised fine-tuning: read from their sources, split, recorded in a manifest.

Sources (see `SFTConfig`):
- our demonstrations, `trainer/data/assistant/demos/<lang>.jsonl`, written in this repository;
- instruction-following examples generated from our own texts (`trainer.instructions`);
- AlpacaEval's instructions with one of two open models' answers (train in SPLITS.md), the answer cut at
  a paragraph boundary to what a 270M model can learn;
- hh-rlhf harmless-base first turns that our labels call harmful and whose *chosen* reply refuses.
The public sets are read by path and never copied; the manifest keeps their file hashes, the counts per
source, language and kind, and one hash over every conversation, so a run can be traced to its data.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Conversation",
    "DataError",
    "alpaca_conversations",
    "build",
    "demo_conversations",
    "hh_rlhf_refusals",
    "instruction_conversations",
    "split",
]

ALPACA_FILES = ("Mistral-7B-Instruct-v0.2.json", "Mixtral-8x7B-Instruct-v0.1.json")
_ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """A data source that is missing or malformed, with the file (and line) at fault."""


@dataclass(frozen=True)
class Conversation:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    source: str
    lang: str = "en"
    kind: str = ""

    def as_messages(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.messages, ensure_ascii=False).encode()).hexdigest()


@dataclass
class Dataset:
    train: list[Conversation]
    validation: list[Conversation]
    manifest: dict[str, Any] = field(default_factory=dict)


def demo_conversations(directory: Path) -> list[Conversation]:
    """Every `<lang>.jsonl` of `directory`; a malformed line is a DataError naming file and line."""
    if not directory.is_dir():
        raise DataError(f"demonstrations directory {directory} does not exist")
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise DataError(f"no <lang>.jsonl demonstrations in {directory}")
    return [c for path in files for c in file_conversations(path, "demos", default_lang=path.stem)]


def file_conversations(path: Path, source: str, default_lang: str = "en") -> list[Conversation]:
    """One `messages` JSONL file; a missing file or a malformed line is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    conversations = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(raw, dict):
            raise DataError(f"{where}: each line must be a JSON object")
        messages = _messages(raw.get("messages"), where)
        lang = str(raw.get("lang") or default_lang)
        conversations.append(Conversation(messages, source, lang, str(raw.get("kind", ""))))
    return conversations


def _messages(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: `messages` must be a non-empty list")
    out = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise DataError(f"{where}: messages[{i}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise DataError(f"{where}: messages[{i}].role must be one of {', '.join(_ROLES)}, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{where}: messages[{i}].content must be a non-empty string")
        out.append((role, content))
    turns = [r for r, _ in out if r != "system"]
    if any(r == "system" for r, _ in out[1:]):
        raise DataError(f"{where}: a system message may only come first")
    expected = ["user", "assistant"] * (len(turns) // 2 + 1)
    if not turns or turns != expected[: len(turns)] or turns[-1] != "assistant":
        raise DataError(f"{where}: turns must alternate user/assistant and end with the assistant")
    return tuple(out)


def instruction_conversations(
    topics_file: Path, count: int, seed: int, *, combined: bool = False
) -> list[Conversation]:
    """`count` generated examples: one constraint each, or with ``combined`` several at once."""
    from trainer.instruction_combos import generate_combined
    from trainer.instructions import generate, read_topics

    if count <= 0:
        return []
    if not topics_file.is_file():
        raise DataError(f"topics file {topics_file} does not exist")
    try:
        topics = read_topics(topics_file)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return [
        Conversation((("user", e.prompt), ("assistant", e.answer)), "instructions", "en", e.constraint)
        for e in (generate_combined if combined else generate)(topics, count, seed)
    ]


def cut_answer(answer: str, max_words: int) -> str | None:
    """Whole paragraphs from the start, at most `max_words` words; None when not even the first fits
    or the cut ends on an introduction (":") whose list was cut away."""
    kept: list[str] = []
    words = 0
    for paragraph in (p.strip() for p in answer.strip().split("\n\n")):
        if not paragraph:
            continue
        n = len(paragraph.split())
        if words + n > max_words:
            break
        kept.append(paragraph)
        words += n
    if not kept:
        return None
    if kept[-1].endswith(":"):
        kept.pop()
    return "\n\n".join(kept) if kept else None


def alpaca_conversations(data_dir: Path, count: int, max_words: int, seed: int) -> list[Conversation]:
    """`count` AlpacaEval instructions (by `seed`) with the shorter of the two answers after the cut."""
    if count <= 0:
        return []
    rows = [_read_json_list(data_dir / "alpaca-eval-outputs" / name) for name in ALPACA_FILES]
    if len({len(r) for r in rows}) != 1:
        raise DataError("the two alpaca-eval-outputs files do not hold the same instructions")
    candidates = []
    for pair in zip(*rows, strict=True):
        instruction = str(pair[0].get("instruction", "")).strip()
        if not instruction or len(instruction.split()) > 200:
            continue
        answers = [a for a in (cut_answer(str(r.get("output", "")), max_words) for r in pair) if a]
        if answers:
            candidates.append(
                Conversation((("user", instruction), ("assistant", min(answers, key=len))), "alpaca")
            )
    random.Random(seed).shuffle(candidates)
    return candidates[:count]


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} does not exist (data_dir points at ../shared/data?)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: expected a JSON array of objects")
    return rows


def hh_rlhf_refusals(data_dir: Path, count: int, seed: int) -> list[Conversation]:
    """First turns our labels call harmful (not benign, not skipped, not excluded as near-duplicates of
    an evaluation set) whose chosen first reply is a refusal of 6-80 words."""
    if count <= 0:
        return []
    from classifiers.refusals import is_refusal
    from classifiers.training.labels import HH_RLHF_FILE, HH_RLHF_LABELS, SKIP, digest, read_labels

    path = data_dir / HH_RLHF_FILE
    if not path.is_file():
        raise DataError(f"{path} does not exist (data_dir points at ../shared/data?)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        chosen = [str(json.loads(line)["chosen"]) for line in f if line.strip()]
    seen: set[str] = set()
    out = []
    for label in read_labels(HH_RLHF_LABELS):
        if label.kind in ("benign", SKIP) or label.excluded or label.row >= len(chosen):
            continue
        prompt, reply = _first_exchange(chosen[label.row])
        if digest(" ".join(prompt.split())) != label.digest or prompt in seen:
            continue
        if is_refusal(reply) and 6 <= len(reply.split()) <= 80:
            seen.add(prompt)
            out.append(Conversation((("user", prompt), ("assistant", reply)), "hh-rlhf", "en", "refusal"))
    random.Random(seed).shuffle(out)
    return out[:count]


def _first_exchange(transcript: str) -> tuple[str, str]:
    human = transcript.split("\n\nHuman:", 1)[-1]
    prompt, _, rest = human.partition("\n\nAssistant:")
    reply = rest.split("\n\nHuman:", 1)[0]
    return " ".join(prompt.split()), reply.strip()


def split(
    conversations: Iterable[Conversation], share: float
) -> tuple[list[Conversation], list[Conversation]]:
    """Validation by content hash: the same conversation lands on the same side in every run."""
    train: list[Conversation] = []
    validation: list[Conversation] = []
    for c in conversations:
        (validation if int(c.digest[:8], 16) / 0xFFFFFFFF < share else train).append(c)
    return train, validation


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(
    *,
    demos_dir: Path,
    topics_file: Path,
    data_dir: Path,
    demo_repeats: int,
    instruction_examples: int,
    alpaca_examples: int,
    alpaca_max_words: int,
    hh_rlhf_refusals_count: int,
    validation_share: float,
    seed: int,
    data_file: Path | None = None,
    combined_examples: int = 0,
) -> Dataset:
    """Every source read and checked (errors name the file), split, repeated, shuffled by `seed`.
    With ``data_file`` that file is the only source (a safety dataset from `railguard data build`)."""
    if data_file is not None:
        sources = {"file": file_conversations(data_file, "file")}
    else:
        sources = {
            "demos": demo_conversations(demos_dir),
            "instructions": instruction_conversations(topics_file, instruction_examples, seed),
            "alpaca": alpaca_conversations(data_dir, alpaca_examples, alpaca_max_words, seed),
            "hh-rlhf": hh_rlhf_refusals(data_dir, hh_rlhf_refusals_count, seed),
        }
        if combined_examples > 0:  # only then, so that earlier runs' manifests stay as they were
            sources["combined"] = instruction_conversations(
                topics_file, combined_examples, seed, combined=True
            )
    train: list[Conversation] = []
    validation: list[Conversation] = []
    for name, conversations in sources.items():
        t, v = split(conversations, validation_share)
        train.extend(t * (demo_repeats if name == "demos" else 1))
        validation.extend(v)
    random.Random(seed).shuffle(train)
    if data_file is not None:
        files = {str(data_file): file_sha256(data_file)}
    else:
        generated = instruction_examples + combined_examples
        files = _source_files(demos_dir, topics_file, data_dir, generated, alpaca_examples,
                              hh_rlhf_refusals_count)  # fmt: skip
    everything = hashlib.sha256()
    for c in [*train, *validation]:
        everything.update(c.digest.encode())
    manifest = {
        "sources": {
            name: {"conversations": len(c), "languages": dict(Counter(x.lang for x in c))}
            for name, c in sources.items()
        },
        "train": _counts(train),
        "validation": _counts(validation),
        "demo_repeats": demo_repeats,
        "files_sha256": files,
        "conversations_sha256": everything.hexdigest(),
    }
    return Dataset(train, validation, manifest)


def _source_files(
    demos_dir: Path,
    topics_file: Path,
    data_dir: Path,
    instruction_examples: int,
    alpaca_examples: int,
    hh_rlhf_refusals_count: int,
) -> dict[str, str]:
    files: dict[str, str] = {str(p): file_sha256(p) for p in sorted(demos_dir.glob("*.jsonl"))}
    if instruction_examples > 0:
        files[str(topics_file)] = file_sha256(topics_file)
    if alpaca_examples > 0:
        for name in ALPACA_FILES:
            files[f"{data_dir.name}/alpaca-eval-outputs/{name}"] = file_sha256(
                data_dir / "alpaca-eval-outputs" / name
            )
    if hh_rlhf_refusals_count > 0:
        from classifiers.training.labels import HH_RLHF_FILE, HH_RLHF_LABELS

        files[f"{data_dir.name}/{HH_RLHF_FILE}"] = file_sha256(data_dir / HH_RLHF_FILE)
        files["classifiers/labels/" + HH_RLHF_LABELS.name] = file_sha256(HH_RLHF_LABELS)
    return files


def _counts(conversations: list[Conversation]) -> dict[str, Any]:
    return {
        "conversations": len(conversations),
        "by_source": dict(Counter(c.source for c in conversations)),
        "by_language": dict(sorted(Counter(c.lang for c in conversations).items())),
        "by_kind": dict(sorted(Counter(c.kind for c in conversations if c.kind).items())),
    }
