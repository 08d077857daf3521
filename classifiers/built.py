"""What a build leaves in the cache, by path: ``artifact_paths(config)`` says where each file of
``config``'s encoder is (built or not), beside the shipped trained parts it is served with.

:func:`classifiers.export.build` writes these files; the runtime only opens them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from classifiers.config import ClassifiersConfig
from classifiers.encoder import INT8_RECIPE, encoder_key

__all__ = ["BuiltArtifacts", "artifact_paths", "fused_calibration", "part_names", "trained_paths"]


def part_names(layers: Sequence[int]) -> list[str]:
    """The encoder's parts between its exits: ``(3, 6)`` -> ``blocks1-3``, ``blocks4-6``, ``blocks7-last``."""
    bounds = [0, *layers]
    return [f"blocks{a + 1}-{b}" for a, b in itertools.pairwise(bounds)] + [f"blocks{bounds[-1] + 1}-last"]


@dataclass(frozen=True, slots=True)
class BuiltArtifacts:
    directory: Path
    tokenizer: Path
    encoder_meta: Path
    onnx_fp32: Path
    onnx_int8: Path
    # SmoothQuant's channel maxima, measured once per build directory: every int8 file in it (the whole
    # encoder, each exit configuration's parts) is smoothed from these, whichever process builds it
    smoothing_peaks: Path
    heads: Path
    calibration: Path
    lora: Path
    # With early exits, also built: the encoder in parts split at these blocks (early_exit.py), at the
    # serving precision only (training's other precision builds its own: `build` with that config)
    exit_layers: tuple[int, ...] = ()
    exit_precision: str = "int8"
    build_seconds: float = 0.0

    def onnx(self, precision: str) -> Path:
        return self.onnx_int8 if precision == "int8" else self.onnx_fp32

    def variant(self, precision: str) -> str:
        """``fp32`` or the int8 recipe (``int8-smooth0.8-u8``): what cached embeddings are named by."""
        return self.onnx(precision).name.removeprefix("encoder.").removesuffix(".onnx")

    def exit_parts_at(self, precision: str) -> tuple[Path, ...]:
        """The encoder's parts between its exits (``blocks1-3``, ``blocks4-6``, ``blocks7-last``) at
        ``precision``; none without exits."""
        if not self.exit_layers:
            return ()
        variant = self.variant(precision)
        return tuple(self.directory / f"{name}.{variant}.onnx" for name in part_names(self.exit_layers))

    @property
    def exit_parts(self) -> tuple[Path, ...]:
        """The parts the build makes: at the serving precision."""
        return self.exit_parts_at(self.exit_precision)

    @property
    def missing(self) -> tuple[Path, ...]:
        """The files a build makes that are not there yet (none: built)."""
        files = (
            self.tokenizer,
            self.encoder_meta,
            self.onnx_fp32,
            self.onnx_int8,
            self.smoothing_peaks,
            *self.exit_parts,
        )
        return tuple(p for p in files if not p.exists())

    @property
    def complete(self) -> bool:
        return not self.missing


def artifact_paths(config: ClassifiersConfig) -> BuiltArtifacts:
    source = config.encoder_source
    lora = config.trained_dir / "lora.safetensors"
    directory = config.cache_dir / encoder_key(config.encoder, source, lora)
    return BuiltArtifacts(
        directory=directory,
        tokenizer=directory / "tokenizer.json",
        encoder_meta=directory / "encoder.json",
        onnx_fp32=directory / "encoder.fp32.onnx",
        onnx_int8=directory / f"encoder.int8-{INT8_RECIPE}.onnx",
        smoothing_peaks=directory / f"smoothing-peaks.{INT8_RECIPE}.safetensors",
        heads=config.trained_dir / "heads.npz",
        calibration=config.trained_dir / "calibration.json",
        lora=lora,
        exit_layers=config.exit_layers if config.uses_early_exit else (),
        exit_precision=config.precision,
    )


def trained_paths(config: ClassifiersConfig) -> BuiltArtifacts:
    """:func:`artifact_paths`, once ``config``'s encoder is known to have trained heads: an encoder
    nobody trained heads for is refused before anything is built or opened for it."""
    paths = artifact_paths(config)
    missing = [p for p in (paths.heads, paths.calibration) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"no trained heads for encoder {config.encoder!r} ({', '.join(map(str, missing))} missing): "
            f"train them (`railguard classifiers train --encoder {config.encoder}`) or set artifacts_dir"
        )
    return paths


def fused_calibration(config: ClassifiersConfig) -> Path:
    """The thresholds of the mean of ``config``'s encoder and its ``fuse``'s (which must exist)."""
    calibration = config.fused_calibration
    if config.fuse is None or calibration is None or not calibration.is_file():
        fuse = config.fuse.encoder if config.fuse is not None else "<encoder>"
        raise FileNotFoundError(
            f"no thresholds for the fusion with {fuse} ({calibration} missing): "
            f"calibrate them (`railguard classifiers calibrate-fusion --encoder {config.encoder} "
            f"--fuse {fuse}`)"
        )
    return calibration
