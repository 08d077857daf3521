"""Our labels for a training set that comes without them, kept by row and digest, never by text.

Anthropic's hh-rlhf ``harmless-base`` (train in ``SPLITS.md``) holds red-team dialogues with no harm
labels; their first human turns are the casual, indirect requests MultiJail and Aegis were sampled
from, the kind the heads missed most. The team labelled each distinct first turn with a
``label_set`` kind (or ``skip`` where the text alone does not say), by reading it, as
``labels/hh-rlhf-guide.md`` says. The file ships those labels; the text is read by path from the
data set, as ever.

A labels file is TSV, one row per labelled text: ``row<TAB>digest<TAB>kind<TAB>excluded``.

- ``row``: the 0-based row of the source file the text comes from;
- ``digest``: the first 12 hex digits of the text's SHA-1, so that another version of the file fails
  loudly instead of training on the wrong labels;
- ``kind``: a :func:`~classifiers.training.seed.label_set` kind, or ``skip`` (not trained on);
- ``excluded``: empty, or why a labelled row is left out (``near-duplicate of multijail``:
  ``railguard classifiers decontaminate`` writes it).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from classifiers.training.seed import label_set

__all__ = [
    "HH_RLHF_HEADER",
    "HH_RLHF_LABELS",
    "LABELS_DIR",
    "SKIP",
    "Label",
    "digest",
    "first_human_turn",
    "hh_rlhf_prompts",
    "labelled_texts",
    "read_labels",
    "with_exclusions",
    "write_labels",
]

LABELS_DIR = Path(__file__).resolve().parent.parent / "labels"  # classifiers/labels/
HH_RLHF_LABELS = LABELS_DIR / "hh-rlhf-harmless-base.tsv"
HH_RLHF_FILE = "hh-rlhf-harmless-base/test.jsonl.gz"
SKIP = "skip"
HH_RLHF_HEADER = """\
Labels for the first human turn of hh-rlhf harmless-base (test.jsonl.gz), written by the team by
reading each distinct turn, as labels/hh-rlhf-guide.md says. No text of the data set here.
row<TAB>sha1[:12] of the turn<TAB>kind (label_set kind or skip)<TAB>why left out, if it is"""


@dataclass(frozen=True, slots=True)
class Label:
    row: int
    digest: str
    kind: str
    excluded: str = ""

    @property
    def trains(self) -> bool:
        return self.kind != SKIP and not self.excluded


def digest(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def read_labels(path: Path) -> list[Label]:
    """The rows of a labels file; a malformed row or an unknown kind is a ValueError naming its line."""
    labels = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) not in (3, 4) or not cells[0].isdigit() or len(cells[1]) != 12:
            raise ValueError(f"{path}:{number}: expected row<TAB>digest<TAB>kind[<TAB>excluded]")
        kind = cells[2]
        if kind != SKIP:
            try:
                label_set(kind)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None
        labels.append(Label(int(cells[0]), cells[1], kind, cells[3] if len(cells) == 4 else ""))
    return labels


def write_labels(path: Path, labels: list[Label], header: str) -> None:
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{x.row}\t{x.digest}\t{x.kind}\t{x.excluded}".rstrip("\t") for x in labels]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def first_human_turn(transcript: str) -> str:
    """The first ``Human:`` turn of an hh-rlhf transcript, whitespace collapsed."""
    turn = transcript.split("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)[0]
    return " ".join(turn.split())


def hh_rlhf_prompts(data_dir: Path) -> list[str]:
    """The first human turn of every row of hh-rlhf ``harmless-base`` (row order; repeats kept)."""
    with gzip.open(data_dir / HH_RLHF_FILE, "rt", encoding="utf-8") as f:
        return [first_human_turn(str(json.loads(line)["chosen"])) for line in f if line.strip()]


def labelled_texts(texts: list[str], labels: list[Label]) -> Iterator[tuple[Label, str]]:
    """Each label with its text; a row out of range or a text whose digest differs is a ValueError."""
    for label in labels:
        if label.row >= len(texts) or digest(texts[label.row]) != label.digest:
            raise ValueError(
                f"row {label.row} of the data set is not the text its label was written for: "
                "another version of the file? (labels: classifiers/labels/)"
            )
        yield label, texts[label.row]


def with_exclusions(labels: list[Label], excluded: dict[int, str]) -> list[Label]:
    """``labels`` with ``excluded`` (row -> reason) as their exclusions, every other one cleared."""
    return [replace(x, excluded=excluded.get(x.row, "")) for x in labels]
