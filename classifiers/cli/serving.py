"""``railguard classifiers build`` (the artefacts serving opens) and ``railguard classify`` (scores,
one JSON object per input)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from classifiers.cli.options import config_from

__all__ = ["add_build", "add_classify"]


def add_build(sub: Any, common: argparse.ArgumentParser) -> None:
    b = sub.add_parser("build", parents=[common], help="export + quantize the encoder into the cache")
    b.add_argument("--force", action="store_true")
    b.set_defaults(handler=_build)


def add_classify(sub: Any, common: argparse.ArgumentParser) -> None:
    c = sub.add_parser("classify", parents=[common], help="score text or JSONL; JSONL out")
    c.add_argument("text", nargs="*", help="texts to score (default: read --input)")
    c.add_argument("--input", "-i", default=None, help="JSONL file ('-' = stdin); plain lines also work")
    c.add_argument("--field", default="text", help="JSON field holding the text")
    c.set_defaults(handler=_classify)


def _build(args: argparse.Namespace) -> int:
    from classifiers.export import build

    config = config_from(args)
    started = time.perf_counter()
    for cfg in (config, config.fused_member()) if config.fuse else (config,):
        built = build(cfg, force=args.force)
        print(f"classifier artefacts in {built.directory} ({time.perf_counter() - started:.1f}s)")
    return 0


def _inputs(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, Any]]]:
    for text in args.text:
        yield text, {}
    if args.input is None:
        if args.text:
            return
        args.input = "-"
    stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    with stream:
        for line in stream:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield line, {}
                continue
            if isinstance(record, dict):
                yield str(record.get(args.field, "")), record
            else:
                yield str(record), {}


def _classify(args: argparse.Namespace) -> int:
    from classifiers.runtime import SafetyClassifier  # loading builds what is missing (torch, once)

    pending = list(_inputs(args))
    with SafetyClassifier.load(config_from(args)) as classifier:
        for start in range(0, len(pending), 256):
            chunk = pending[start : start + 256]
            for (text, record), result in zip(chunk, classifier.score([t for t, _ in chunk]), strict=True):
                categories, category_scores = result.to_openai()
                out = {
                    **{k: v for k, v in record.items() if k != args.field},
                    "text": text,
                    "flagged": result.harmful,
                    "categories": list(result.flagged_categories),
                    "language": result.language,
                    "scores": {k: round(v, 4) for k, v in result.scores.items()},
                    "pii": [
                        {"kind": s.kind, "start": s.start, "end": s.end, "score": s.score} for s in result.pii
                    ],
                    "openai": {"categories": categories, "category_scores": category_scores},
                    "llama_guard": result.to_llama_guard(),
                }
                print(json.dumps(out, ensure_ascii=False))
    return 0
