"""``railguard classifiers eval``: metrics on the evaluation-only sets (:mod:`classifiers.evaluation`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from classifiers.cli.options import config_from, data_dir

__all__ = ["add_commands"]


def add_commands(sub: Any, common: argparse.ArgumentParser, data: argparse.ArgumentParser) -> None:
    e = sub.add_parser("eval", parents=[common, data], help="metrics on the evaluation-only sets")
    e.add_argument("--limit", type=int, default=None, help="at most N items per set (CI slice)")
    e.add_argument("--sets", nargs="*", default=None, help="only these sets")
    e.add_argument("--json", type=Path, default=Path("classifiers-eval.json"), help="JSON report path")
    e.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from classifiers.evaluation.evaluate import evaluate, to_markdown, write_json

    found = data_dir(args, required=True)
    if found is None:
        return 2
    config = config_from(args)
    rows = evaluate(config, found, limit=args.limit, sets=args.sets, log=lambda m: print(m, file=sys.stderr))
    print(to_markdown(rows))
    write_json(rows, args.json, {"limit": args.limit, "precision": config.precision})
    print(f"\nJSON report: {args.json}", file=sys.stderr)
    return 0
