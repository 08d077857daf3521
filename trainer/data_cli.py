"""`railguard data build --from reviewed.jsonl [--general N] [--out DIR]`: a safety dataset version.

Reads decided review items (`railguard review export`), writes `safety-<sha>/` with sft.jsonl, dpo.jsonl
and manifest.json under `--out` (default `<cache_dir>/datasets`), and prints the version.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from trainer.datasets import DataError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="railguard data", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="SFT and DPO data from reviewed items")
    b.add_argument("--from", dest="source", type=Path, required=True, help="railguard review export's JSONL")
    b.add_argument("--general", type=int, default=0, help="our demonstrations mixed in against forgetting")
    b.add_argument("--out", type=Path, help="default: <cache_dir>/datasets")
    b.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    from trainer.safety_data import build

    try:
        lines = args.source.read_text(encoding="utf-8").splitlines()
        items = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{args.source}:{number}: not JSON ({exc.msg})") from None
        if args.out is None:
            from gateway.settings import Settings

            args.out = Settings().cache_dir / "datasets"
        built = build(items, args.out, data_dir=args.data_dir, general=args.general)
    except (DataError, OSError) as exc:
        print(f"railguard data: {exc}", file=sys.stderr)
        return 2
    counts = built.manifest["counts"]
    print(f"{built.version}: {counts['sft']} SFT, {counts['dpo']} DPO, {counts['general']} general "
          f"-> {built.directory} (skipped: {built.manifest['skipped'] or 'none'})")  # fmt: skip
    return 0
