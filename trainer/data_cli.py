"""`railguard data build|replay`: safety dataset versions, and traffic to make them from.

    railguard data build --from reviewed.jsonl [--general N] [--out DIR]
    railguard data replay --target http://127.0.0.1:8080/v1 [--harmful 150 --benign 150]

`build` reads decided review items (`railguard review export`), writes `safety-<sha>/` with sft.jsonl,
dpo.jsonl and manifest.json under `--out` (default `<cache_dir>/datasets`), and prints the version.
`replay` sends training-set harmful prompts and our benign contrasts through a gateway (trainer/replay.py).
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
    r = sub.add_parser("replay", help="training-set harmful prompts and benign contrasts through a gateway")
    r.add_argument("--target", required=True, help="the gateway's base URL, e.g. http://127.0.0.1:8080/v1")
    r.add_argument("--model", default="gemma-3-270m")
    r.add_argument("--harmful", type=int, default=150)
    r.add_argument("--benign", type=int, default=150)
    r.add_argument("--concurrency", type=int, default=4)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args(argv)
    if args.action == "replay":
        return _replay(args)
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


def _replay(args: argparse.Namespace) -> int:
    import asyncio
    import os

    import openai

    from trainer.replay import replay, replay_prompts

    try:
        prompts = replay_prompts(args.data_dir, args.harmful, args.benign, args.seed)
        counts = asyncio.run(replay(args.target, args.model, prompts, concurrency=args.concurrency,
                                    api_key=os.environ.get("RAILGUARD_API_KEY", "unused")))  # fmt: skip
    except (OSError, KeyError, openai.APIConnectionError) as exc:
        print(f"railguard data replay: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(counts, indent=2))
    return 0
