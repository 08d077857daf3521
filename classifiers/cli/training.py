"""``railguard classifiers train|train-exit|calibrate|calibrate-fusion|decontaminate``: the trained
parts beside the heads (:mod:`classifiers.training`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from classifiers.cli.options import config_from, data_dir, fraction
from classifiers.training.calibration import MAX_FPR
from classifiers.training.decontaminate import DEFAULT_THRESHOLD
from classifiers.training.fit import TrainOptions
from classifiers.training.manifest import OPTIONAL_SOURCES

__all__ = ["add_commands"]


def add_commands(sub: Any, common: argparse.ArgumentParser, data: argparse.ArgumentParser) -> None:
    calibrating = argparse.ArgumentParser(add_help=False)
    calibrating.add_argument(
        "--max-fpr",
        type=fraction,
        default=MAX_FPR["unsafe"],
        help="the operating point: at most this share of benign validation texts flagged by any head "
        f"(default {MAX_FPR['unsafe']})",
    )
    calibrating.add_argument(
        "--with-source",
        action="append",
        default=[],
        choices=list(OPTIONAL_SOURCES),
        help="also train and calibrate on this optional manifest source (pass it to every command "
        "that trains or calibrates the same heads)",
    )
    t = sub.add_parser(
        "train",
        parents=[common, data, calibrating],
        help="train heads, calibrate thresholds (e5-small: then its exit heads, as train-exit does)",
    )
    t.add_argument("--hidden", type=int, default=256, help="hidden units (0: linear heads)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed-only", action="store_true", help="train on the shipped seed examples only")
    t.add_argument(
        "--finetune",
        action="store_true",
        help="first train LoRA deltas on the encoder (~21 min on 2 quiet cores), then the heads on it",
    )
    t.add_argument("--finetune-epochs", type=int, default=2)
    t.set_defaults(handler=_train)
    x = sub.add_parser(
        "train-exit",
        parents=[common, data, calibrating],
        help="the exit heads (e5-small: after blocks 3 and 6), the thresholds of the deepest exit's "
        "mean with the full heads and each exit's cascade margin (the full heads must be trained)",
    )
    x.add_argument("--seed-only", action="store_true", help="train on the shipped seed examples only")
    x.add_argument("--keep-heads", action="store_true", help="keep the exit heads: new thresholds only")
    x.set_defaults(handler=_train_exit)
    r = sub.add_parser(
        "calibrate",
        parents=[common, data, calibrating],
        help="new thresholds for the trained heads on the validation split (the heads are kept)",
    )
    r.add_argument("--seed-only", action="store_true", help="calibrate on the shipped seed examples only")
    r.set_defaults(handler=_calibrate)
    f = sub.add_parser(
        "calibrate-fusion",
        parents=[common, data, calibrating],
        help="thresholds for the mean of --encoder's and --fuse's probabilities (both already trained)",
    )
    f.add_argument("--seed-only", action="store_true", help="calibrate on the shipped seed examples only")
    f.set_defaults(handler=_calibrate)
    d = sub.add_parser(
        "decontaminate",
        parents=[data],
        help="mark labelled training rows that near-duplicate an evaluation text (classifiers/labels/)",
    )
    d.add_argument("--threshold", type=fraction, default=DEFAULT_THRESHOLD, help="word-set Jaccard")
    d.add_argument("--labels", type=Path, default=None, help="hh-rlhf labels file (default: the shipped one)")
    d.add_argument(
        "--contrast",
        action="store_true",
        help="the contrast pairs instead (writes classifiers/contrast/excluded.tsv)",
    )
    d.set_defaults(handler=_decontaminate)


def _train(args: argparse.Namespace) -> int:
    from classifiers.training.train import train

    found = None if args.seed_only else data_dir(args, required=True)
    if found is None and not args.seed_only:
        return 2
    config = config_from(args)
    if args.finetune:
        from classifiers.training.finetune import FinetuneOptions, finetune

        tuning = FinetuneOptions(epochs=args.finetune_epochs, extra_sources=tuple(args.with_source))
        finetune(config, found, tuning)
    options = TrainOptions(
        hidden=args.hidden, epochs=args.epochs, max_fpr=args.max_fpr, extra_sources=tuple(args.with_source)
    )
    train(config, found, options)
    if config.exit_layers:  # the exit heads read the new full heads' encoder: retrain them
        from classifiers.training.exits import train_exit

        train_exit(config, found, options)
    return 0


def _train_exit(args: argparse.Namespace) -> int:
    from classifiers.training.exits import train_exit

    found = None if args.seed_only else data_dir(args, required=True)
    if found is None and not args.seed_only:
        return 2
    options = TrainOptions(max_fpr=args.max_fpr, extra_sources=tuple(args.with_source))
    train_exit(config_from(args), found, options, retrain=not args.keep_heads)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from classifiers.training.exits import train_exit
    from classifiers.training.train import calibrate_fusion, recalibrate

    found = None if args.seed_only else data_dir(args, required=True)
    if found is None and not args.seed_only:
        return 2
    config = config_from(args)
    options = TrainOptions(max_fpr=args.max_fpr, extra_sources=tuple(args.with_source))
    if args.command == "calibrate-fusion":
        calibrate_fusion(config, found, options)
        return 0
    recalibrate(config, found, options)
    if config.uses_early_exit:  # the same operating point for the exits' thresholds
        train_exit(config, found, options, retrain=False)
    return 0


def _decontaminate(args: argparse.Namespace) -> int:
    from classifiers.training.decontaminate import mark_hh_rlhf
    from classifiers.training.labels import HH_RLHF_LABELS, read_labels

    found = data_dir(args, required=True)
    if found is None:
        return 2
    if args.contrast:
        from classifiers.training.contrast import CONTRAST_DIR, read_contrast
        from classifiers.training.decontaminate import mark_contrast

        counts = mark_contrast(CONTRAST_DIR, found, args.threshold)
        total = len(read_contrast(CONTRAST_DIR, keep_excluded=True))
        print(f"contrast: {counts.total()} of {total} texts excluded {dict(sorted(counts.items()))}")
        return 0
    path = args.labels or HH_RLHF_LABELS
    counts = mark_hh_rlhf(path, found, args.threshold)
    by_set = dict(sorted(counts.items()))
    print(f"{path.name}: {counts.total()} of {len(read_labels(path))} rows excluded {by_set}")
    return 0
