"""Command line: ``railguard classifiers build|train|train-exit|calibrate[-fusion]|decontaminate|eval|probe``,
``railguard classify``.

The gateway's CLI hands over its whole argument list: ``main(["classifiers", "train", ...])`` or
``main(["classify", ...])`` (``main(["train", ...])`` works too). Heavy imports happen inside commands.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from classifiers.config import ClassifiersConfig, FusedEncoder
from classifiers.decontaminate import DEFAULT_THRESHOLD
from classifiers.encoder import ENCODERS
from classifiers.manifest import OPTIONAL_SOURCES
from classifiers.train import MAX_FPR, TrainOptions

__all__ = ["default_data_dir", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path | None:
    """``../shared/data`` beside the repository (or the working directory) when it exists."""
    for base in (REPO_ROOT, Path.cwd()):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    return None


def _config(args: argparse.Namespace) -> ClassifiersConfig:
    fields: dict[str, Any] = {}
    for name in ("encoder", "cache_dir", "artifacts_dir", "precision", "threads", "batch_size"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    if getattr(args, "fuse", None):
        fields["fuse"] = FusedEncoder(encoder=args.fuse, cascade=bool(getattr(args, "cascade", False)))
    if getattr(args, "no_early_exit", False):
        fields["early_exit"] = False
    if getattr(args, "exit_blocks", None):
        fields["exit_blocks"] = args.exit_blocks
    return ClassifiersConfig(**fields)


def exit_blocks(value: str) -> tuple[int, ...]:
    """``--exit-blocks 3,6``: block numbers, comma-separated."""
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: block numbers separated by commas, e.g. 3,6") from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-dir", type=Path, help="built artefacts (default ~/.cache/railguard/classifiers)"
    )
    common.add_argument("--artifacts-dir", type=Path, help="heads.npz + calibration.json (default: shipped)")
    common.add_argument("--encoder", choices=list(ENCODERS), help="default: e5-small")
    common.add_argument("--precision", choices=["int8", "fp32"])
    common.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    common.add_argument("--batch-size", type=int)
    common.add_argument(
        "--fuse",
        choices=list(ENCODERS),
        help="average with this encoder's heads (e.g. gemma-probe; thresholds from calibration+<it>.json)",
    )
    common.add_argument(
        "--cascade",
        action="store_true",
        help="with --fuse: run the fused encoder only on texts the first is unsure of (calibrated margin)",
    )
    common.add_argument(
        "--no-early-exit",
        action="store_true",
        help="score every text with the full encoder (default for e5-small: the exit heads after "
        "blocks 3 and 6, the later blocks only where they are unsure)",
    )
    common.add_argument(
        "--exit-blocks",
        type=exit_blocks,
        metavar="N[,N]",
        help="the blocks the early exits read (default for e5-small: 3,6; e.g. 6 for that exit alone)",
    )
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", type=Path, default=None, help="default: ../shared/data if present")
    calibrating = argparse.ArgumentParser(add_help=False)
    calibrating.add_argument(
        "--max-fpr",
        type=_fraction,
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

    parser = argparse.ArgumentParser(prog="railguard classifiers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", parents=[common], help="export + quantize the encoder into the cache")
    b.add_argument("--force", action="store_true")
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
    x = sub.add_parser(
        "train-exit",
        parents=[common, data, calibrating],
        help="the exit heads (e5-small: after blocks 3 and 6), the thresholds of the deepest exit's "
        "mean with the full heads and each exit's cascade margin (the full heads must be trained)",
    )
    x.add_argument("--seed-only", action="store_true", help="train on the shipped seed examples only")
    x.add_argument("--keep-heads", action="store_true", help="keep the exit heads: new thresholds only")
    r = sub.add_parser(
        "calibrate",
        parents=[common, data, calibrating],
        help="new thresholds for the trained heads on the validation split (the heads are kept)",
    )
    r.add_argument("--seed-only", action="store_true", help="calibrate on the shipped seed examples only")
    f = sub.add_parser(
        "calibrate-fusion",
        parents=[common, data, calibrating],
        help="thresholds for the mean of --encoder's and --fuse's probabilities (both already trained)",
    )
    f.add_argument("--seed-only", action="store_true", help="calibrate on the shipped seed examples only")
    d = sub.add_parser(
        "decontaminate",
        parents=[data],
        help="mark labelled training rows that near-duplicate an evaluation text (classifiers/labels/)",
    )
    d.add_argument("--threshold", type=_fraction, default=DEFAULT_THRESHOLD, help="word-set Jaccard")
    d.add_argument("--labels", type=Path, default=None, help="hh-rlhf labels file (default: the shipped one)")
    e = sub.add_parser("eval", parents=[common, data], help="metrics on the evaluation-only sets")
    e.add_argument("--limit", type=int, default=None, help="at most N items per set (CI slice)")
    e.add_argument("--sets", nargs="*", default=None, help="only these sets")
    e.add_argument("--json", type=Path, default=Path("classifiers-eval.json"), help="JSON report path")
    p = sub.add_parser(
        "probe", parents=[common, data], help="heads on a local LM's hidden states vs the shipped encoder"
    )
    p.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a transformers checkpoint (default: the converted gemma-3-270m of `railguard prepare`)",
    )
    p.add_argument("--layers", type=int, nargs="+", default=[6, 9, 12, 15], help="1-based decoder blocks")
    p.add_argument("--eval", action="store_true", help="also report the chosen probe on the evaluation sets")
    p.add_argument("--limit", type=int, default=None, help="at most N items per evaluation set")
    p.add_argument("--json", type=Path, default=Path("classifiers-probe.json"), help="JSON report path")
    c = sub.add_parser("classify", parents=[common], help="score text or JSONL; JSONL out")
    c.add_argument("text", nargs="*", help="texts to score (default: read --input)")
    c.add_argument("--input", "-i", default=None, help="JSONL file ('-' = stdin); plain lines also work")
    c.add_argument("--field", default="text", help="JSON field holding the text")
    return parser


def _fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not 0.0 < x < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {value!r}")
    return x


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["classifiers"]:  # `railguard classifiers train` arrives whole
        args_list = args_list[1:]
    args = _parser().parse_args(args_list)
    handler = {
        "build": _build,
        "train": _train,
        "train-exit": _train_exit,
        "calibrate": _calibrate,
        "calibrate-fusion": _calibrate,
        "decontaminate": _decontaminate,
        "eval": _eval,
        "probe": _probe,
        "classify": _classify,
    }
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
        return handler[args.command](args)
    except (FileNotFoundError, ValueError) as exc:  # missing or mismatched trained parts, bad input files
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _build(args: argparse.Namespace) -> int:
    from classifiers.build import build

    config = _config(args)
    started = time.perf_counter()
    for cfg in (config, config.fused_member()) if config.fuse else (config,):
        built = build(cfg, force=args.force)
        print(f"classifier artefacts in {built.directory} ({time.perf_counter() - started:.1f}s)")
    return 0


def _data_dir(args: argparse.Namespace, required: bool) -> Path | None:
    data_dir: Path | None = args.data_dir or default_data_dir()
    if data_dir is None and required:
        print("no data directory: pass --data-dir (e.g. ../shared/data)", file=sys.stderr)
    return data_dir


def _train(args: argparse.Namespace) -> int:
    from classifiers.train import train

    data_dir = None if args.seed_only else _data_dir(args, required=True)
    if data_dir is None and not args.seed_only:
        return 2
    config = _config(args)
    if args.finetune:
        from classifiers.finetune import FinetuneOptions, finetune

        tuning = FinetuneOptions(epochs=args.finetune_epochs, extra_sources=tuple(args.with_source))
        finetune(config, data_dir, tuning)
    options = TrainOptions(
        hidden=args.hidden, epochs=args.epochs, max_fpr=args.max_fpr, extra_sources=tuple(args.with_source)
    )
    train(config, data_dir, options)
    if config.exit_layers:  # the exit heads read the new full heads' encoder: retrain them
        from classifiers.train import train_exit

        train_exit(config, data_dir, options)
    return 0


def _train_exit(args: argparse.Namespace) -> int:
    from classifiers.train import train_exit

    data_dir = None if args.seed_only else _data_dir(args, required=True)
    if data_dir is None and not args.seed_only:
        return 2
    options = TrainOptions(max_fpr=args.max_fpr, extra_sources=tuple(args.with_source))
    train_exit(_config(args), data_dir, options, retrain=not args.keep_heads)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from classifiers.train import calibrate_fusion, recalibrate, train_exit

    data_dir = None if args.seed_only else _data_dir(args, required=True)
    if data_dir is None and not args.seed_only:
        return 2
    config = _config(args)
    options = TrainOptions(max_fpr=args.max_fpr, extra_sources=tuple(args.with_source))
    if args.command == "calibrate-fusion":
        calibrate_fusion(config, data_dir, options)
        return 0
    recalibrate(config, data_dir, options)
    if config.uses_early_exit:  # the same operating point for the exits' thresholds
        train_exit(config, data_dir, options, retrain=False)
    return 0


def _decontaminate(args: argparse.Namespace) -> int:
    from classifiers.decontaminate import mark_hh_rlhf
    from classifiers.labels import HH_RLHF_LABELS, read_labels

    data_dir = _data_dir(args, required=True)
    if data_dir is None:
        return 2
    path = args.labels or HH_RLHF_LABELS
    counts = mark_hh_rlhf(path, data_dir, args.threshold)
    by_set = dict(sorted(counts.items()))
    print(f"{path.name}: {counts.total()} of {len(read_labels(path))} rows excluded {by_set}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from classifiers.evaluate import evaluate, to_markdown, write_json

    data_dir = _data_dir(args, required=True)
    if data_dir is None:
        return 2
    config = _config(args)
    rows = evaluate(
        config, data_dir, limit=args.limit, sets=args.sets, log=lambda m: print(m, file=sys.stderr)
    )
    print(to_markdown(rows))
    write_json(rows, args.json, {"limit": args.limit, "precision": config.precision})
    print(f"\nJSON report: {args.json}", file=sys.stderr)
    return 0


def _probe(args: argparse.Namespace) -> int:
    from classifiers.probe_compare import compare, to_markdown, write_json

    data_dir = _data_dir(args, required=True)
    if data_dir is None:
        return 2
    config = _config(args)
    model_dir: Path = args.model_dir or config.cache_dir.parent / "models" / "gemma-3-270m"
    if not (model_dir / "config.json").is_file():
        print(
            f"no transformers checkpoint in {model_dir}: run `railguard prepare` (converts the local model) "
            "or pass --model-dir",
            file=sys.stderr,
        )
        return 2
    model_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    depth = int(model_config.get("text_config", model_config).get("num_hidden_layers", 0))
    if not args.layers or not all(1 <= layer <= depth for layer in args.layers):
        print(f"--layers must be blocks 1..{depth} of {model_dir.name}, got {args.layers}", file=sys.stderr)
        return 2
    result = compare(
        config,
        data_dir,
        model_dir,
        args.layers,
        evaluate=args.eval,
        limit=args.limit,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(to_markdown(result))
    write_json(result, args.json)
    print(f"\nJSON report: {args.json}", file=sys.stderr)
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
    from classifiers.runtime import SafetyClassifier

    pending = list(_inputs(args))
    with SafetyClassifier.load(_config(args)) as classifier:
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
