"""``railguard classifiers train``: heads on the frozen encoder, thresholds on a held-out split.

1. Examples from the manifest (seed + training sets under ``--data-dir``), split 80/20 by a hash of
   the text (validation = carved from training data only; no evaluation set is read here).
2. Embeddings of each text's first window from the ONNX encoder at both precisions (the serving one,
   fp32 by default, and the other as augmentation), cached on disk.
3. An MLP per head group (shared hidden layer, one sigmoid per head), masked BCE: a head only learns
   from examples whose label for it is known; positives re-weighted per head.
4. Thresholds per head on the validation split: best F1 with a false-positive cap for ``unsafe``
   and the attack heads; then one shift of every hazard and attack threshold (in logits) so that the
   decision a guard makes on them together (``harmful``: any of them flagged) keeps ``unsafe``'s cap
   on the split's benign texts. Heads + calibration are written to ``artifacts_dir``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from classifiers.build import BuiltArtifacts, build
from classifiers.cascade import Cascade, fuse, pick_margin
from classifiers.config import ClassifiersConfig
from classifiers.decision import decision_margin
from classifiers.early_exit import ExitEncoder, ExitWindows, exit_name, files_digest, heads_digest
from classifiers.embed_cache import EmbeddingCache
from classifiers.heads import Calibration, Heads
from classifiers.manifest import Example, load_training, with_sources
from classifiers.metrics import binary_metrics, pick_threshold
from classifiers.runtime import Encoder, TextWindows, fusion_name
from classifiers.taxonomy import ATTACKS, LEARNED, PII, UNSAFE

__all__ = [
    "MAX_FPR",
    "TrainOptions",
    "calibrate",
    "calibrate_decision",
    "calibrate_fusion",
    "calibrate_probabilities",
    "decision_metrics",
    "embedding_cache",
    "exit_embedding_cache",
    "fit_heads",
    "label_matrix",
    "masked_loss",
    "positive_weights",
    "recalibrate",
    "split",
    "train",
    "train_exit",
]

MAX_FPR = {UNSAFE: 0.05, **dict.fromkeys(ATTACKS, 0.02)}
MIN_VAL_POSITIVES = 5


@dataclass(frozen=True, slots=True)
class TrainOptions:
    hidden: int = 256
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    noise: float = 0.0  # std of Gaussian noise added to embeddings
    # Train on z-scored features and fold the scaling into the first layer (the served heads are the
    # same numpy MLP, at the same cost). e5-small, same data: validation `unsafe` AUPRC 0.975 -> 0.981,
    # recall at the 5 % FPR cap 0.86 -> 0.91, macro AUPRC 0.861 -> 0.918; a language model's hidden
    # states need it more (a few huge dimensions leave the rest near zero). docs/classifiers.md.
    standardize: bool = True
    # Also train on each text's embedding from the other ONNX precision (int8 when fp32 serves), same
    # labels: an augmentation that raised validation `unsafe` AUPRC 0.966 -> 0.971 (docs/classifiers.md).
    both_precisions: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    # The most benign validation texts the guard's decision (any hazard or attack head) may flag: the
    # operating point, `--max-fpr`. Each head also keeps its own cap (MAX_FPR) before the joint shift.
    max_fpr: float = MAX_FPR[UNSAFE]
    # Optional manifest sources to train and calibrate with (`--with-source`; manifest.OPTIONAL_SOURCES).
    extra_sources: tuple[str, ...] = ()


def split(examples: list[Example], val_fraction: float) -> tuple[list[Example], list[Example]]:
    """Deterministic split by a hash of the text: the same text always lands on the same side."""
    train: list[Example] = []
    val: list[Example] = []
    for ex in examples:
        h = int.from_bytes(hashlib.sha1(ex.text.encode(), usedforsecurity=False).digest()[:4], "big") / 2**32
        (val if h < val_fraction else train).append(ex)
    return train, val


def embedding_cache(config: ClassifiersConfig, artifacts: BuiltArtifacts) -> EmbeddingCache:
    encoder = Encoder(artifacts, config)
    name = f"{artifacts.directory.name}.{artifacts.variant(config.precision)}.{config.max_tokens}.npz"
    return EmbeddingCache(config.cache_dir / "embeddings" / name, encoder)


def exit_embedding_cache(config: ClassifiersConfig, artifacts: BuiltArtifacts, layer: int) -> EmbeddingCache:
    """Window embeddings at the encoder's exit after block ``layer``, cached like
    :func:`embedding_cache`'s (the parts at ``config.precision`` are built first if need be). The
    name carries every exit: the parts between them are what computes the embeddings."""
    if artifacts.exit_precision != config.precision:
        artifacts = build(config)
    windows = TextWindows(artifacts.directory, config.max_tokens, config.max_windows)
    precision = config.precision
    encoder = ExitEncoder(
        artifacts.exit_parts_at(precision),
        threads=config.threads,
        batch_size=1 if precision == "int8" else config.batch_size,
        pad_id=windows.pad_id,
    )
    layers = artifacts.exit_layers
    parts = "-".join(map(str, layers))
    name = f"{artifacts.directory.name}.exit{layer}-of-{parts}-{artifacts.variant(precision)}"
    return EmbeddingCache(
        config.cache_dir / "embeddings" / f"{name}.{config.max_tokens}.npz",
        ExitWindows(windows, encoder, layers.index(layer)),
    )


def label_matrix(
    examples: list[Example],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    y = np.zeros((len(examples), len(LEARNED)), dtype=np.float32)
    known = np.zeros_like(y)
    for i, ex in enumerate(examples):
        for j, head in enumerate(LEARNED):
            if head in ex.labels:
                y[i, j], known[i, j] = ex.labels[head], 1.0
    return y, known


def positive_weights(y: Any, known: Any) -> Any:
    """Per head: known negatives over known positives (capped), so rare heads still learn."""
    positives = (y * known).sum(0)
    return (((1 - y) * known).sum(0) / positives.clamp(min=1)).clamp(max=20.0)


def masked_loss(loss_fn: Any, logits: Any, y: Any, known: Any) -> Any:
    """The mean over heads of each head's BCE over the examples whose label it knows."""
    per_head = (loss_fn(logits, y) * known).sum(0) / known.sum(0).clamp(min=1)
    return (per_head * (known.sum(0) > 0)).sum() / known.shape[1]


def fit_heads(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    options: TrainOptions,
) -> Heads:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible: multi-threaded CPU kernels may sum in another order per run
    try:
        return _fit_heads(x, y, known, options)
    finally:
        torch.set_num_threads(threads)


def _fit_heads(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    options: TrainOptions,
) -> Heads:
    import torch

    torch.manual_seed(options.seed)
    mean = x.mean(0) if options.standardize else np.zeros(x.shape[1], dtype=np.float32)
    std = x.std(0) + 1e-6 if options.standardize else np.ones(x.shape[1], dtype=np.float32)
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
    yt, kt = torch.from_numpy(y), torch.from_numpy(known)
    pos_weight = positive_weights(yt, kt)
    layers: list[torch.nn.Module] = []
    if options.hidden:
        layers += [
            torch.nn.Linear(x.shape[1], options.hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(options.dropout),
        ]
    layers.append(torch.nn.Linear(options.hidden or x.shape[1], y.shape[1]))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    generator = torch.Generator().manual_seed(options.seed)
    for _ in range(options.epochs):
        order = torch.randperm(len(xt), generator=generator)
        for idx in torch.split(order, options.batch_size):
            opt.zero_grad()
            k = kt[idx]
            xb = xt[idx]
            if options.noise:
                xb = xb + options.noise * torch.randn(xb.shape, generator=generator)
            loss = masked_loss(loss_fn, model(xb), yt[idx], k)
            loss.backward()
            opt.step()
    model.eval()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    weights = [m.weight.detach().numpy().T.astype(np.float32) for m in linears]
    biases = [m.bias.detach().numpy().astype(np.float32) for m in linears]
    # ((x - mean) / std) @ W + b  ==  x @ (W / std[:, None]) + (b - (mean / std) @ W)
    biases[0] = (biases[0] - (mean / std) @ weights[0]).astype(np.float32)
    weights[0] = (weights[0] / std[:, None]).astype(np.float32)
    return Heads(names=LEARNED, weights=tuple(weights), biases=tuple(biases))


def calibrate(
    heads: Heads,
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    max_fpr: float = MAX_FPR[UNSAFE],
) -> tuple[dict[str, float], dict[str, Any]]:
    return calibrate_probabilities(heads(x), y, known, max_fpr)


def calibrate_probabilities(
    probs: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    max_fpr: float = MAX_FPR[UNSAFE],
) -> tuple[dict[str, float], dict[str, Any]]:
    """Per head (columns in ``LEARNED`` order): the threshold and its validation metrics, and under
    ``"harmful"`` the decision's (:func:`calibrate_decision`)."""
    thresholds: dict[str, float] = {PII: 0.5}
    for j, head in enumerate(LEARNED):
        rows = known[:, j] > 0
        labels = y[rows, j].astype(np.int64)
        if labels.sum() < MIN_VAL_POSITIVES:
            thresholds[head] = 0.5
        else:
            t = pick_threshold(labels, probs[rows, j], MAX_FPR.get(head))
            thresholds[head] = round(min(max(t, 0.05), 0.95), 4)
    thresholds, decision = calibrate_decision(probs, y, known, thresholds, max_fpr)
    report: dict[str, Any] = {}
    for j, head in enumerate(LEARNED):
        rows = known[:, j] > 0
        report[head] = binary_metrics(y[rows, j].astype(np.int64), probs[rows, j], thresholds[head]).to_json()
    report["harmful"] = decision
    return thresholds, report


def calibrate_decision(
    probs: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    thresholds: dict[str, float],
    max_fpr: float = MAX_FPR[UNSAFE],
) -> tuple[dict[str, float], dict[str, Any]]:
    """Raise every hazard and attack threshold by one shift in logits, the smallest (none if none is
    needed) under which the guard's decision, any of those heads flagged, flags at most ``max_fpr``
    of the validation split's benign texts and has the best F1 there.

    Each head's own threshold keeps its own cap, but a guard refuses when any head fires, and their
    false positives add up (e5-small's shipped heads: 4.8 % of benign texts by ``unsafe`` alone, 7.4 %
    by any head). Texts count as harmful when any of those heads' labels is positive, as benign when
    ``unsafe`` is known negative and none is positive; the rest are left out.
    """
    cols = [j for j, head in enumerate(LEARNED) if head != PII]
    rows, labels = _decision_rows(y, known)
    margin = decision_margin(probs[rows], LEARNED, thresholds)
    shift = max(0.0, pick_threshold(labels, margin, max_fpr, default=0.0))
    shifted = dict(thresholds)
    for j in cols:
        t = thresholds[LEARNED[j]]
        raised = 1.0 / (1.0 + math.exp(-(math.log(t / (1.0 - t)) + shift)))
        shifted[LEARNED[j]] = min(math.ceil(raised * 1e4) / 1e4, 0.9999)  # up: never under the shift
    before = binary_metrics(labels, margin, 0.0).to_json()
    after = binary_metrics(labels, decision_margin(probs[rows], LEARNED, shifted), 0.0).to_json()
    return shifted, {"max_fpr": max_fpr, "shift": round(shift, 4), "before": before, **after}


def _decision_rows(
    y: npt.NDArray[np.float32], known: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """The texts the guard's decision is scored on and their labels: harmful when any hazard or
    attack head's label is positive, benign when ``unsafe`` is known negative and none is."""
    cols = [j for j, head in enumerate(LEARNED) if head != PII]
    positive = (y[:, cols] * known[:, cols]).sum(1) > 0
    u = LEARNED.index(UNSAFE)
    benign = (known[:, u] > 0) & (y[:, u] == 0) & ~positive
    rows = positive | benign
    return rows, positive[rows].astype(np.int64)


def decision_metrics(
    probs: npt.NDArray[np.float32],
    y: npt.NDArray[np.float32],
    known: npt.NDArray[np.float32],
    thresholds: dict[str, float],
) -> dict[str, Any]:
    """The guard's decision (any hazard or attack head flagged) under ``thresholds``, scored."""
    rows, labels = _decision_rows(y, known)
    return binary_metrics(labels, decision_margin(probs[rows], LEARNED, thresholds), 0.0).to_json()


def _training_matrix(
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
    x_train, y_train, known_train = _training_matrix(embedding_cache, config, artifacts, train_set, options)
    x_val = embedding_cache(config, artifacts).first_windows([e.text for e in val_set])
    log(f"embedded in {time.perf_counter() - started:.0f}s")
    heads = fit_heads(x_train, y_train, known_train, options)
    thresholds, report = calibrate(heads, x_val, *label_matrix(val_set), options.max_fpr)
    _log_calibration(log, "", thresholds, report)
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
    _log_calibration(log, "", thresholds, report)
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


def _log_calibration(log: Any, prefix: str, thresholds: dict[str, float], report: dict[str, Any]) -> None:
    for head in LEARNED:
        log(f"  {prefix}{head:24s} th={thresholds[head]:.3f} {report[head]}")
    decision = report["harmful"]
    log(
        f"  {prefix}harmful (any head): thresholds shifted {decision['shift']} logits; validation FPR "
        f"{decision['before']['fpr']} -> {decision['fpr']}, recall {decision['before']['recall']} -> "
        f"{decision['recall']}"
    )


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
    _log_calibration(log, "fused ", thresholds, report)
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
            x_train, y_train, known_train = _training_matrix(
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
        _log_calibration(log, f"exit{layer} ", own, own_report)
        info: dict[str, Any]
        if not following:
            mean, _ = fuse(first, full.__getitem__, None)  # what serving computes where it escalates
            final, report = calibrate_probabilities(mean, y, known, options.max_fpr)
            _log_calibration(log, f"exit{layer}+full ", final, report)
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
