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
    e.add_argument("--obfuscated", type=int, default=None, metavar="N",
                   help="dress N harmful and N benign items per set, one obfuscation each in turn, and "
                   "report recall and FPR on them (default 50; 0: none)")  # fmt: skip
    e.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from classifiers.evaluation.evaluate import OBFUSCATED_PER_SET, evaluate, to_markdown, write_json
    from classifiers.evaluation.obfuscate import OBFUSCATIONS, SEED

    found = data_dir(args, required=True)
    if found is None:
        return 2
    config = config_from(args)
    dressed = OBFUSCATED_PER_SET if args.obfuscated is None else args.obfuscated
    rows = evaluate(
        config, found, limit=args.limit, sets=args.sets, obfuscated=dressed,
        log=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    print(to_markdown(rows))
    obfuscated = {"per_set": dressed, "seed": SEED, "obfuscations": list(OBFUSCATIONS)}
    write_json(
        rows, args.json, {"limit": args.limit, "precision": config.precision, "obfuscated": obfuscated}
    )
    print(f"\nJSON report: {args.json}", file=sys.stderr)
    return 0
