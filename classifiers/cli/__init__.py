"""Command line: ``railguard classifiers build|train|train-exit|calibrate[-fusion]|decontaminate|eval``,
``railguard classify``.

The gateway's CLI hands over its whole argument list: ``main(["classifiers", "train", ...])`` or
``main(["classify", ...])`` (``main(["train", ...])`` works too). Heavy imports happen inside commands:
``serving.py`` (build, classify), ``training.py`` (train, train-exit, calibrate, calibrate-fusion,
decontaminate), ``evaluation.py`` (eval).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from classifiers.cli import evaluation, serving, training
from classifiers.cli.options import common_options, data_options, default_data_dir

__all__ = ["default_data_dir", "main"]


def _parser() -> argparse.ArgumentParser:
    common, data = common_options(), data_options()
    parser = argparse.ArgumentParser(prog="railguard classifiers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serving.add_build(sub, common)
    training.add_commands(sub, common, data)
    evaluation.add_commands(sub, common, data)
    serving.add_classify(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["classifiers"]:  # `railguard classifiers train` arrives whole
        args_list = args_list[1:]
    args = _parser().parse_args(args_list)
    fuse = getattr(args, "fuse", None)  # decontaminate takes no encoder options
    if getattr(args, "cascade", False) and not fuse:
        print("--cascade needs --fuse (e.g. --fuse gemma-probe --cascade)", file=sys.stderr)
        return 2
    if args.command == "calibrate-fusion" and not fuse:
        print("calibrate-fusion needs --fuse (e.g. --fuse gemma-probe)", file=sys.stderr)
        return 2
    if args.command in ("train", "train-exit", "calibrate") and fuse:
        print(
            f"{args.command} is for one encoder's heads (--encoder); "
            "`calibrate-fusion --fuse ...` calibrates the mean",
            file=sys.stderr,
        )
        return 2
    try:
        code: int = args.handler(args)
        return code
    except (FileNotFoundError, ValueError) as exc:  # missing or mismatched trained parts, bad input files
        print(f"error: {exc}", file=sys.stderr)
        return 2
