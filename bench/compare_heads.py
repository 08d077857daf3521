"""Two `railguard classifiers eval` reports side by side: the shipped heads against a candidate (other
training data, another calibration), each set's `all` row and MultiJail's languages.

    railguard classifiers eval --data-dir ../shared/data --json /tmp/eval-shipped.json
    cp -r classifiers/artifacts /tmp/art-contrast
    railguard classifiers train --data-dir ../shared/data --with-source contrast \
        --artifacts-dir /tmp/art-contrast
    railguard classifiers eval --data-dir ../shared/data --artifacts-dir /tmp/art-contrast \
        --json /tmp/eval-contrast.json
    .venv/bin/python bench/compare_heads.py /tmp/eval-shipped.json /tmp/eval-contrast.json \\
        --labels shipped "with the contrast pairs" [--write-docs docs/classifiers.md]

`--write-docs` puts the table between the COMPARE markers of the file, with the command line.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- COMPARE:BEGIN (written by bench/compare_heads.py --write-docs) -->"
END = "<!-- COMPARE:END -->"
SHOWN = ("f1", "recall", "fpr")


def _rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    report = json.loads(path.read_text(encoding="utf-8"))
    return {
        (r["set"], r["group"]): r for r in report["rows"] if r["group"] == "all" or r["set"] == "multijail"
    }


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    return " / ".join("–" if row.get(k) is None else f"{row[k]:.3f}" for k in SHOWN)


def table(base: Path, candidate: Path, labels: tuple[str, str]) -> str:
    a, b = _rows(base), _rows(candidate)
    lines = [
        f"| set | group | {labels[0]}: F1 / recall / FPR | {labels[1]}: F1 / recall / FPR |",
        "|---|---|---|---|",
    ]
    for key in [*a, *(k for k in b if k not in a)]:
        lines.append(f"| {key[0]} | {key[1]} | {_cell(a.get(key))} | {_cell(b.get(key))} |")
    stable = [
        f"{name}: {r['stability']['changed_share']:.1%} of verdicts changed by an appended suffix"
        for name, rows in ((labels[0], a), (labels[1], b))
        for r in rows.values()
        if r.get("stability")
    ]
    return "\n".join(lines + (["", "; ".join(stable) + "."] if stable else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--labels", nargs=2, default=("base", "candidate"))
    parser.add_argument("--write-docs", type=Path, default=None, metavar="MD")
    args = parser.parse_args(argv)
    for path in (args.base, args.candidate):
        if not path.is_file():
            print(f"error: {path}: no such report", file=sys.stderr)
            return 2
    body = table(args.base, args.candidate, tuple(args.labels))
    print(body)
    if args.write_docs is not None:
        text = args.write_docs.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), flags=re.DOTALL)
        if not pattern.search(text):
            print(f"error: {args.write_docs} has no {BEGIN} section", file=sys.stderr)
            return 2
        command = (
            "`.venv/bin/python bench/compare_heads.py "
            + shlex.join(sys.argv[1:] if argv is None else argv)
            + "`"
        )
        section = f"{BEGIN}\nWritten by {command}.\n\n{body}\n{END}"
        args.write_docs.write_text(pattern.sub(lambda _: section, text, count=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
