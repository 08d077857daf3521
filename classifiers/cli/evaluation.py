"""``railguard classifiers eval``: metrics on the evaluation-only sets (:mod:`classifiers.evaluation`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
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
    e.add_argument("--docs", type=Path, default=None, metavar="MD",
                   help="also write the table between this file's EVAL markers")  # fmt: skip
    e.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from classifiers.evaluation.evaluate import OBFUSCATED_PER_SET, evaluate, to_markdown, write_json
    from classifiers.evaluation.obfuscate import OBFUSCATIONS, SEED

    found = data_dir(args, required=True)
    if found is None:
        return 2
    if args.docs is not None and not args.docs.is_file():
        print(f"error: --docs {args.docs}: no such file", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    config = config_from(args)
    dressed = OBFUSCATED_PER_SET if args.obfuscated is None else args.obfuscated
    rows = evaluate(
        config, found, limit=args.limit, sets=args.sets, obfuscated=dressed,
        log=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    table = to_markdown(rows)
    print(table)
    obfuscated = {"per_set": dressed, "seed": SEED, "obfuscations": list(OBFUSCATIONS)}
    write_json(
        rows, args.json, {"limit": args.limit, "precision": config.precision, "obfuscated": obfuscated}
    )
    print(f"\nJSON report: {args.json}", file=sys.stderr)
    if args.docs is not None:
        from classifiers.evaluation.docs import write_section

        minutes = (datetime.now(UTC) - started).total_seconds() / 60
        command = _command(args)
        head = (
            f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC ({minutes:.1f} min on this machine, "
            "window embeddings cached by earlier runs reused; "
            f"{config.encoder}, {config.precision}"
            + (f", fused with {config.fuse.encoder}" if config.fuse is not None else "")
            + (", through its early exits" if config.uses_early_exit else "")
            + f"; {'the first ' + str(args.limit) + ' items of each set' if args.limit else 'every item'})."
        )
        write_section(args.docs, head + "\n\n" + table)
        print(f"docs: {args.docs}", file=sys.stderr)
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that re-runs this evaluation (the options that change what it measures)."""
    parts = ["railguard classifiers eval", "--data-dir", str(args.data_dir or "../shared/data")]
    for flag in ("encoder", "precision", "fuse", "limit", "obfuscated"):
        value = getattr(args, flag, None)
        if value is not None:
            parts += [f"--{flag}", str(value)]
    for flag in ("cascade", "no_early_exit"):
        if getattr(args, flag, False):
            parts.append("--" + flag.replace("_", "-"))
    if args.sets:
        parts += ["--sets", *args.sets]
    return " ".join([*parts, "--json", str(args.json), "--docs", str(args.docs)])
