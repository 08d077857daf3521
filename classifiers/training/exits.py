"""``railguard classifiers train-exit``: the early exits' heads (:mod:`classifiers.early_exit`), the
thresholds of the deepest exit's mean with the full heads, and each exit's cascade margin."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

from classifiers.cascade import Cascade, fuse
from classifiers.config import ClassifiersConfig
from classifiers.early_exit import exit_name, files_digest, heads_digest
from classifiers.evaluation.embeddings import embedding_cache, exit_embedding_cache
from classifiers.export import build
from classifiers.heads import Calibration, Heads
from classifiers.taxonomy import LEARNED
from classifiers.training.calibration import (
    MIN_VAL_POSITIVES,
    calibrate_probabilities,
    decision_metrics,
    log_calibration,
    pick_margin,
)
from classifiers.training.fit import TrainOptions, fit_heads, label_matrix
from classifiers.training.manifest import load_training, split, with_sources
from classifiers.training.train import training_matrix

__all__ = ["train_exit"]


def train_exit(
    config: ClassifiersConfig,
    data_dir: Path | None,
    options: TrainOptions | None = None,
    *,
    retrain: bool = True,
    log: Any = print,
) -> list[Calibration]:
    """Every exit's heads (:mod:`classifiers.early_exit`) on its block, by ``train``'s recipe, and
    on the same validation split: the thresholds of the mean of the deepest exit's and the full
    heads' probabilities with that cascade's margin, then for each earlier exit the margin of its
    cascade in front of the ones after it (``retrain=False``: the exit heads kept, only thresholds
    and margins anew). Writes ``exit<N>/`` and ``calibration+exit<N>.json`` beside the full heads,
    which must be trained already. Returns each exit's ``calibration+exit<N>.json``, shallowest first."""
    options = options or TrainOptions()
    config = config.model_copy(update={"early_exit": True, "fuse": None})
    ClassifiersConfig.model_validate(config.model_dump())  # an encoder without an exit is refused
    started = time.perf_counter()
    artifacts = build(config)
    if Calibration.load(artifacts.calibration).encoder != artifacts.directory.name:
        raise ValueError(
            f"heads in {artifacts.calibration.parent} were trained on another build of the encoder: "
            f"retrain them first (railguard classifiers train)"
        )
    train_set, val_set = split(
        load_training(data_dir, with_sources(options.extra_sources)), options.val_fraction
    )
    texts = [e.text for e in val_set]
    y, known = label_matrix(val_set)
    heads: dict[int, Heads] = {}
    for layer in artifacts.exit_layers:
        files = config.exit_files(layer)
        if retrain:
            x_train, y_train, known_train = training_matrix(
                functools.partial(exit_embedding_cache, layer=layer), config, artifacts, train_set, options
            )
            log(f"exit block {layer}: embedded in {time.perf_counter() - started:.0f}s")
            heads[layer] = fit_heads(x_train, y_train, known_train, options)
        else:
            heads[layer] = Heads.load(files[0])
    full = Heads.load(artifacts.heads)(embedding_cache(config, artifacts).first_windows(texts))
    after = full  # what the stages after an exit give each validation text
    following: tuple[Path, ...] = ()
    final: dict[str, float] = {}
    written: list[Calibration] = []
    for layer in reversed(artifacts.exit_layers):  # the deepest first: it is averaged with the full heads
        files = config.exit_files(layer)
        first = heads[layer](exit_embedding_cache(config, artifacts, layer).first_windows(texts))
        own, own_report = calibrate_probabilities(first, y, known, options.max_fpr)
        log_calibration(log, f"exit{layer} ", own, own_report)
        info: dict[str, Any]
        if not following:
            mean, _ = fuse(first, full.__getitem__, None)  # what serving computes where it escalates
            final, report = calibrate_probabilities(mean, y, known, options.max_fpr)
            log_calibration(log, f"exit{layer}+full ", final, report)
            info = {"full_heads": heads_digest(artifacts.heads)}
        else:  # the thresholds of the stages after it judge what it moves onto their scale
            info = {"next": files_digest(following)}
        average = not following
        margin, cascade = pick_margin(
            first, after, y, known, LEARNED, own, final, min_positives=MIN_VAL_POSITIVES, average=average
        )
        log(f"  exit{layer} cascade margin {margin} (past it: {cascade['tried'][str(margin)]})")
        after, _ = fuse(first, after.__getitem__, Cascade.of(LEARNED, own, final, margin, average=average))
        if following:  # the guard's decision through this exit and the ones after it
            report = {"harmful": decision_metrics(after, y, known, final)}
        name = exit_name(artifacts, layer)
        examples = {"train": len(train_set), "validation": len(val_set)}
        own_info: dict[str, Any] = {"examples": examples, "layer": layer}
        if retrain:  # written with their thresholds, never before them
            heads[layer].save(files[0])
            own_info["options"] = {k: getattr(options, k) for k in TrainOptions.__slots__}
        else:
            kept = Calibration.load(files[1]).info.get("options")
            own_info["options"] = kept if isinstance(kept, dict) else {}
        Calibration(
            encoder=name,
            precision=config.precision,
            max_tokens=config.max_tokens,
            thresholds=own,
            info={**own_info, "validation": own_report},
        ).save(files[1])
        calibration = Calibration(
            encoder=name,
            precision=config.precision,
            max_tokens=config.max_tokens,
            thresholds=final,
            info={"examples": {"validation": len(val_set)}, **info, "validation": report, "cascade": cascade},
        )
        calibration.save(files[2])
        written.insert(0, calibration)
        following = files
        log(f"exit block {layer}: heads and thresholds -> {files[0].parent}, {files[2]}")
    log(f"through the exits: {json.dumps(decision_metrics(after, y, known, final))}")
    return written
