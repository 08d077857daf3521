"""``railguard classifiers train`` and ``calibrate[-fusion]``: heads on the frozen encoder, thresholds on
a held-out split; the files they write beside the heads.

1. Examples from the manifest (seed + training sets under ``--data-dir``), split 80/20 by a hash of
   the text (validation = carved from training data only; no evaluation set is read here).
2. Embeddings of each text's first window from the ONNX encoder at both precisions (the serving one,
   int8 by default, and the other as augmentation), cached on disk.
3. An MLP per head group (shared hidden layer, one sigmoid per head), masked BCE: a head only learns
   from examples whose label for it is known; positives re-weighted per head.
4. Thresholds per head on the validation split: best F1 with a false-positive cap for ``unsafe``
   and the attack heads; then one shift of every hazard and attack threshold (in logits) so that the
   decision a guard makes on them together (``harmful``: any of them flagged) keeps ``unsafe``'s cap
   on the split's benign texts. Heads + calibration are written to ``artifacts_dir``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from classifiers.built import BuiltArtifacts
from classifiers.cascade import fuse
from classifiers.config import ClassifiersConfig
from classifiers.evaluation.embeddings import EmbeddingCache, embedding_cache
from classifiers.export import build
from classifiers.heads import Calibration, Heads
from classifiers.runtime import fusion_name
from classifiers.taxonomy import LEARNED
from classifiers.training.calibration import (
    MIN_VAL_POSITIVES,
    calibrate,
    calibrate_probabilities,
    log_calibration,
    pick_margin,
)
from classifiers.training.fit import TrainOptions, fit_heads, label_matrix
from classifiers.training.manifest import load_training, split, with_sources
from classifiers.training.seed import Example

__all__ = ["calibrate_fusion", "recalibrate", "train", "training_matrix"]


def training_matrix(
    cache: Callable[[ClassifiersConfig, BuiltArtifacts], EmbeddingCache],
    config: ClassifiersConfig,
    artifacts: BuiltArtifacts,
    examples: list[Example],
    options: TrainOptions,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Embeddings of each example's first window (from ``cache``) and its labels; with
    ``both_precisions`` each example again from the other ONNX precision, the same labels."""
    texts = [e.text for e in examples]
    x = cache(config, artifacts).first_windows(texts)
    y, known = label_matrix(examples)
    if options.both_precisions:
        other = "int8" if config.precision == "fp32" else "fp32"
        extra = cache(config.model_copy(update={"precision": other}), artifacts).first_windows(texts)
        x, y, known = np.concatenate([x, extra]), np.concatenate([y, y]), np.concatenate([known, known])
    return x, y, known


def train(
    config: ClassifiersConfig,
    data_dir: Path | None,
    options: TrainOptions | None = None,
    *,
    log: Any = print,
) -> Calibration:
    """Train heads and calibrate them; writes ``heads.npz`` and ``calibration.json``."""
    options = options or TrainOptions()
    started = time.perf_counter()
    artifacts = build(config)
    examples = load_training(data_dir, with_sources(options.extra_sources))
    train_set, val_set = split(examples, options.val_fraction)
    log(f"examples: {len(examples)} (train {len(train_set)}, validation {len(val_set)})")
    x_train, y_train, known_train = training_matrix(embedding_cache, config, artifacts, train_set, options)
    x_val = embedding_cache(config, artifacts).first_windows([e.text for e in val_set])
    log(f"embedded in {time.perf_counter() - started:.0f}s")
    heads = fit_heads(x_train, y_train, known_train, options)
    thresholds, report = calibrate(heads, x_val, *label_matrix(val_set), options.max_fpr)
    log_calibration(log, "", thresholds, report)
    heads.save(artifacts.heads)
    calibration = Calibration(
        encoder=artifacts.directory.name,
        precision=config.precision,
        max_tokens=config.max_tokens,
        thresholds=thresholds,
        info={
            "options": {k: getattr(options, k) for k in TrainOptions.__slots__},
            "examples": {"train": len(train_set), "validation": len(val_set)},
            "sources": sorted({e.source.split("/")[0] for e in examples}),
            "validation": report,
        },
    )
    calibration.save(artifacts.calibration)
    log(f"trained in {time.perf_counter() - started:.0f}s -> {artifacts.heads.parent}")
    return calibration


def recalibrate(
    config: ClassifiersConfig,
    data_dir: Path | None,
    options: TrainOptions | None = None,
    *,
    log: Any = print,
) -> Calibration:
    """New thresholds for ``config``'s trained heads (not retrained) on the validation split, by the
    rule ``train`` uses; the calibration's other records are kept. For heads whose training cannot be
    repeated byte for byte (trained on another machine), after a change of the calibration rule."""
    options = options or TrainOptions()
    artifacts = build(config)
    old = Calibration.load(artifacts.calibration)
    if old.encoder != artifacts.directory.name:  # new thresholds would not make stale heads right
        raise ValueError(
            f"heads in {artifacts.calibration.parent} were trained on {old.encoder}, not on "
            f"{artifacts.directory.name}: retrain them (railguard classifiers train)"
        )
    _, val_set = split(load_training(data_dir, with_sources(options.extra_sources)), options.val_fraction)
    x_val = embedding_cache(config, artifacts).first_windows([e.text for e in val_set])
    probs = Heads.load(artifacts.heads)(x_val)
    thresholds, report = calibrate_probabilities(probs, *label_matrix(val_set), options.max_fpr)
    log_calibration(log, "", thresholds, report)
    recorded = old.info.get("examples")
    examples = {**(recorded if isinstance(recorded, dict) else {}), "validation": len(val_set)}
    info = {**old.info, "examples": examples}
    calibration = Calibration(
        encoder=artifacts.directory.name,
        precision=config.precision,
        max_tokens=config.max_tokens,
        thresholds=thresholds,
        info={**info, "validation": report},
    )
    calibration.save(artifacts.calibration)
    log(f"recalibrated -> {artifacts.calibration}")
    return calibration


def calibrate_fusion(
    config: ClassifiersConfig,
    data_dir: Path | None,
    options: TrainOptions | None = None,
    *,
    log: Any = print,
) -> Calibration:
    """Thresholds for the mean of ``config.encoder``'s and ``config.fuse``'s probabilities, picked on
    the same validation split by the same rule as each model's own, and the margin of the cascade
    (:mod:`classifiers.cascade`); writes ``calibration+<fused>.json`` beside the first model's heads.
    Both models' heads must be trained already."""
    if config.fuse is None or config.fused_calibration is None:
        raise ValueError("calibrate_fusion needs config.fuse")
    options = options or TrainOptions()
    member = config.fused_member()
    first, second = build(config), build(member)
    _, val_set = split(load_training(data_dir, with_sources(options.extra_sources)), options.val_fraction)
    texts = [e.text for e in val_set]
    probs = [
        Heads.load(built.heads)(embedding_cache(cfg, built).first_windows(texts))
        for cfg, built in ((config, first), (member, second))
    ]
    y, known = label_matrix(val_set)
    fused, _ = fuse(probs[0], probs[1].__getitem__, None)  # what serving computes
    thresholds, report = calibrate_probabilities(fused, y, known, options.max_fpr)
    log_calibration(log, "fused ", thresholds, report)
    margin, cascade = pick_margin(
        probs[0],
        probs[1],
        y,
        known,
        LEARNED,
        Calibration.load(first.calibration).thresholds,
        thresholds,
        min_positives=MIN_VAL_POSITIVES,
    )
    log(f"  cascade margin {margin} (validation texts escalated: {cascade['tried'][str(margin)]})")
    calibration = Calibration(
        encoder=fusion_name(first, second),
        precision=config.precision,
        max_tokens=config.max_tokens,
        thresholds=thresholds,
        info={"examples": {"validation": len(val_set)}, "validation": report, "cascade": cascade},
    )
    calibration.save(config.fused_calibration)
    log(f"fusion calibrated -> {config.fused_calibration}")
    return calibration
