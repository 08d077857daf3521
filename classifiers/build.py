"""Set-up: turn the shipped trained parts plus the PyPI encoder into the ONNX artefacts the runtime loads.

``build(config)`` is idempotent and cached under ``config.cache_dir/<encoder key>/``; a file lock keeps
two processes from building at once. It needs torch (the ``classifiers`` extra); loading afterwards
does not.
"""

from __future__ import annotations

import dataclasses
import fcntl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifiers.config import ClassifiersConfig
from classifiers.early_exit import part_names
from classifiers.encoder import INT8_RECIPE, encoder_key
from classifiers.torchlock import MODEL_BUILD_LOCK

__all__ = ["BuiltArtifacts", "artifact_paths", "build", "open_session"]


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
    def complete(self) -> bool:
        files = (
            self.tokenizer,
            self.encoder_meta,
            self.onnx_fp32,
            self.onnx_int8,
            self.smoothing_peaks,
            *self.exit_parts,
        )
        return all(p.exists() for p in files)


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


def build(config: ClassifiersConfig, *, force: bool = False) -> BuiltArtifacts:
    """Export and quantize the encoder into the cache unless it is there already."""
    paths = artifact_paths(config)
    if paths.complete and not force:
        return paths
    started = time.perf_counter()
    paths.directory.mkdir(parents=True, exist_ok=True)
    with open(paths.directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if force or not paths.complete:
                with MODEL_BUILD_LOCK:  # torch's default dtype is process-wide: see torchlock.py
                    _build(config, paths, force=force)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dataclasses.replace(paths, build_seconds=time.perf_counter() - started)


def _build(config: ClassifiersConfig, paths: BuiltArtifacts, *, force: bool) -> None:
    from classifiers.early_exit import export_parts
    from classifiers.encoder import export_module, load_torch, quantize, write_tokenizer
    from classifiers.runtime import TextWindows
    from classifiers.smoothing import calibration_texts, channel_peaks, load_peaks, save_peaks, smooth_with

    def missing(*files: Path) -> bool:
        return force or not all(f.is_file() for f in files)

    layers = paths.exit_layers
    for stale in paths.directory.glob("exit*-*.onnx"):  # parts as builds before 2026-12-03 named them
        stale.unlink()
    if missing(paths.smoothing_peaks):
        # int8 files smoothed from maxima nobody kept (builds made before they were) may not match
        # what is built from new ones: they are all built again
        for stale in paths.directory.glob(f"*.{paths.variant('int8')}.onnx"):
            stale.unlink()
    parts = paths.exit_parts  # at the serving precision
    write_tokenizer(config.encoder, config.encoder_source, paths.directory)
    module = load_torch(config.encoder, config.encoder_source, paths.lora if paths.lora.is_file() else None)
    if missing(paths.onnx_fp32):
        export_module(module, paths.onnx_fp32)
    if layers and paths.exit_precision == "fp32" and missing(*parts):
        export_parts(module, layers, parts)
    int8_parts = bool(layers) and paths.exit_precision == "int8" and missing(*parts)
    if not (missing(paths.onnx_int8) or int8_parts or missing(paths.smoothing_peaks)):
        return
    # int8: the same module smoothed in place (classifiers/smoothing.py), exported again, quantized
    if missing(paths.smoothing_peaks):
        windows = TextWindows(paths.directory, config.max_tokens, 1).first_windows(calibration_texts())
        save_peaks(channel_peaks(module, windows), paths.smoothing_peaks)
    smooth_with(module, load_peaks(paths.smoothing_peaks))
    names = ["encoder", *(p.name.split(".")[0] for p in parts)]
    smoothed = [paths.directory / f"smoothed-{name}.tmp.onnx" for name in names]
    try:
        if missing(paths.onnx_int8):
            export_module(module, smoothed[0])
            quantize(smoothed[0], paths.onnx_int8)
        if int8_parts:
            export_parts(module, layers, smoothed[1:])
            for source, target in zip(smoothed[1:], parts, strict=True):
                quantize(source, target)
    finally:
        for f in smoothed:
            f.unlink(missing_ok=True)


def open_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session on the CPU for a built model, ``threads`` intra-op threads."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
