"""`railguard eval assistant`: base vs tuned on IFEval, our held-out prompts, XSTest and HarmBench.

    railguard eval assistant                 # starts a gateway (guard off), asks both model ids
    railguard eval assistant --base-url http://127.0.0.1:8080/v1 --models gemma-3-270m

Writes the table to docs/assistant.md (`--out`) and every answer to `--answers-dir`.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from evaluation.serve import gateway_process
from gateway.settings import SHIPPED_ADAPTER

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
GUARD_OFF = Path(__file__).resolve().parent / "policies" / "guard-off.yaml"


@contextmanager
def guard_off_gateway(max_batch: int, log_path: Path) -> Iterator[str]:
    """`railguard serve` on the embedded model (tuned and base ids), classifiers off, no policy rules."""
    settings = {
        "policy_file": str(GUARD_OFF),
        "classifiers": {"enabled": False},
        "local": {"max_batch": max_batch},
    }
    with gateway_process(settings, log_path) as url:
        yield url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="railguard eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="suite", required=True)
    a = sub.add_parser(
        "assistant", help="IFEval, held-out prompts in 8 languages, XSTest, HarmBench (guard off)"
    )
    a.add_argument("--base-url", help="an OpenAI-compatible endpoint; default: start a guard-off gateway")
    a.add_argument("--models", default="gemma-3-270m-base,gemma-3-270m", help="comma-separated model ids")
    a.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    a.add_argument("--ifeval-limit", type=int, default=None, help="only the first N IFEval prompts")
    a.add_argument(
        "--subset-limit", type=int, default=None, help="only the first N XSTest / HarmBench prompts"
    )
    a.add_argument("--max-tokens", type=int, default=256)
    a.add_argument("--concurrency", type=int, default=16)
    a.add_argument("--out", type=Path, default=ROOT / "docs" / "assistant.md")
    a.add_argument(
        "--answers-dir",
        type=Path,
        default=Path.home() / ".cache" / "railguard" / "eval" / "assistant",
        help="every answer, one JSONL file per model, and the gateway log",
    )
    a.add_argument(
        "--card",
        type=Path,
        default=SHIPPED_ADAPTER / "README.md",
        help="a model card whose evaluation section gets the table (default: the shipped adapter's)",
    )
    from evaluation.safety import add_commands, dispatch

    add_commands(sub)
    args = parser.parse_args(argv)
    if args.suite != "assistant":
        return dispatch(args)

    from evaluation.assistant import markdown, replace_evaluation, run

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        parser.error("--models names no model")
    for needed in (
        "ifeval/input_data.jsonl",
        "xstest/xstest_prompts.csv",
        "harmbench/harmbench_behaviors_text_val.csv",
    ):
        if not (args.data_dir / needed).is_file():
            print(f"railguard eval: {args.data_dir / needed} does not exist (--data-dir)", file=sys.stderr)
            return 2
    started = time.perf_counter()

    def evaluate(base_url: str) -> int:
        report = run(
            base_url=base_url,
            models=models,
            data_dir=args.data_dir,
            ifeval_limit=args.ifeval_limit,
            subset_limit=args.subset_limit,
            max_tokens=args.max_tokens,
            concurrency=args.concurrency,
            answers_dir=args.answers_dir,
        )
        report.settings.update(
            command="railguard eval " + shlex.join(list(argv if argv is not None else sys.argv[2:])),
            date=datetime.date.today().isoformat(),
            answers=str(args.answers_dir).replace(str(Path.home()), "~", 1),
            wall_time_min=(time.perf_counter() - started) / 60,
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table = markdown(report, models)
        args.out.write_text(table, encoding="utf-8")
        print(f"wrote {args.out}")
        if args.card is not None and args.card.is_file():
            replace_evaluation(args.card, table.split("\n", 1)[1])
            print(f"wrote the evaluation into {args.card}")
        return 0

    try:
        if args.base_url:
            return evaluate(args.base_url)
        with guard_off_gateway(args.concurrency, _log_path(args.answers_dir)) as url:
            return evaluate(url)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"railguard eval: {exc}", file=sys.stderr)
        return 2


def _log_path(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "gateway.log"
