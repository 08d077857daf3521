"""`railguard train ...`: one sub-command per algorithm, each a config dataclass + an entry point.

    railguard train sft --config trainer/configs/assistant.yaml [--lora-r 8 --max-steps 10 ...]
    railguard train dpo --data <dataset>/dpo.jsonl [--init-adapter DIR --beta 0.1 --max-steps 50 ...]
    railguard train nightly [--settings railguard.yaml --config nightly.yaml --eval-limit 24 ...]

Settings come from the YAML file, then from `--setting value` flags (names as in the config, dashes or
underscores). A bad setting, a missing or malformed data file or a chat template mismatch is reported as
one line, exit status 2, before the model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from trainer.config import ConfigError, DPOConfig, NightlyConfig, SFTConfig, load_config, parse_overrides

__all__ = ["main"]


def _help_text(cls: type) -> str:
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        lines.append(f"  --{f.name.replace('_', '-'):<24} {f.metadata.get('help', '')} (default: {default})")
    return "settings (YAML keys or flags):\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="railguard train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="algorithm", required=True)
    sft = sub.add_parser(
        "sft",
        help="supervised fine-tuning of a LoRA adapter (TRL SFTTrainer)",
        epilog=_help_text(SFTConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sft.add_argument("--config", type=Path, help="YAML file of settings")
    dpo = sub.add_parser(
        "dpo",
        help="preference optimisation of the adapter in service (TRL DPOTrainer)",
        epilog=_help_text(DPOConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dpo.add_argument("--config", type=Path, help="YAML file of settings")
    nightly = sub.add_parser(
        "nightly",
        help="the loop: review queue -> AI labels -> data -> SFT -> DPO -> gate -> promote (resumable)",
        epilog=_help_text(NightlyConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    nightly.add_argument("--config", type=Path, help="YAML file of settings")
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.algorithm == "nightly":
            from trainer.nightly import main as nightly_main

            return nightly_main(load_config(NightlyConfig, args.config, parse_overrides(rest)))
        if args.algorithm == "dpo":
            from trainer.dpo import train as train_dpo

            print(json.dumps(train_dpo(load_config(DPOConfig, args.config, parse_overrides(rest))), indent=2))
            return 0
        config = load_config(SFTConfig, args.config, parse_overrides(rest))
        from trainer.sft import train

        summary = train(config, args.config)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"railguard train {args.algorithm}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(summary), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
