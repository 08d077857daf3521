"""Set-up: turn the shipped trained parts plus the PyPI encoder into the ONNX artefacts the runtime opens.

``build(config)`` is idempotent and cached under ``config.cache_dir/<encoder key>/``
(:func:`classifiers.built.artifact_paths` names every file); a file lock keeps two processes from
building at once. It needs torch (the ``classifiers`` extra); opening the artefacts afterwards does
not. ``ensure_built(config)`` builds whatever serving ``config`` needs: what
``SafetyClassifier.load`` runs before it opens them (the gateway's first start).
"""

from __future__ import annotations

import dataclasses
import fcntl
import time
from pathlib import Path

from classifiers.built import BuiltArtifacts, artifact_paths, fused_calibration, trained_paths
from classifiers.config import ClassifiersConfig
from classifiers.torchlock import MODEL_BUILD_LOCK

__all__ = ["build", "ensure_built"]


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


def ensure_built(config: ClassifiersConfig) -> BuiltArtifacts:
    """Build what serving ``config`` needs and the cache lacks: its encoder, and with a ``fuse`` the
    second one (the first use only: ~10-60 s, needs torch). An encoder without trained heads, or a
    fusion without its thresholds, is refused (``FileNotFoundError`` naming the command that makes
    them) before anything is built for it."""
    trained_paths(config)
    built = build(config)
    if config.fuse is not None:
        fused_calibration(config)
        member = config.fused_member()
        trained_paths(member)
        build(member)
    return built


def _build(config: ClassifiersConfig, paths: BuiltArtifacts, *, force: bool) -> None:
    from classifiers.export.encoder import export_module, load_torch, quantize, write_tokenizer
    from classifiers.export.exit_parts import export_parts
    from classifiers.export.smoothing import (
        calibration_texts,
        channel_peaks,
        load_peaks,
        save_peaks,
        smooth_with,
    )
    from classifiers.windows import TextWindows

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
    # int8: the same module smoothed in place (smoothing.py), exported again, quantized
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
