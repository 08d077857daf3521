"""What every ``railguard classifiers`` command shares: the encoder options (``common``), the data
directory (``data``), and the settings they make."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from classifiers.config import ClassifiersConfig, FusedEncoder
from classifiers.encoder import ENCODERS

__all__ = [
    "REPO_ROOT",
    "common_options",
    "config_from",
    "data_dir",
    "data_options",
    "default_data_dir",
    "fraction",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path | None:
    """``../shared/data`` beside the repository (or the working directory) when it exists."""
    for base in (REPO_ROOT, Path.cwd()):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    return None


def data_dir(args: argparse.Namespace, required: bool) -> Path | None:
    """``--data-dir``, else :func:`default_data_dir`; says so on stderr when ``required`` and none."""
    found: Path | None = args.data_dir or default_data_dir()
    if found is None and required:
        print("no data directory: pass --data-dir (e.g. ../shared/data)", file=sys.stderr)
    return found


def config_from(args: argparse.Namespace) -> ClassifiersConfig:
    """The settings the encoder options name (the defaults for the rest)."""
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


def fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not 0.0 < x < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {value!r}")
    return x


def common_options() -> argparse.ArgumentParser:
    """The encoder options: which encoder, where its artefacts are, how it runs."""
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
    return common


def data_options() -> argparse.ArgumentParser:
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", type=Path, default=None, help="default: ../shared/data if present")
    return data
