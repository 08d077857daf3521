"""``railguard classifiers probe``: heads on the local model's hidden states, against the shipped encoder.

Same examples, split, head recipe and threshold rule as ``train``. For each probed layer (and all of
them together) heads are trained on the language model's pooled hidden states (z-scored, which these
features need: without it validation ``unsafe`` AUPRC was 0.92 instead of 0.98) and calibrated on the
validation split; the shipped encoder + heads are scored on the same validation texts, and so is the
late fusion of the two (the mean of their probabilities, thresholds re-picked on validation). The
candidate is chosen on validation only (``unsafe`` AUPRC); ``--eval`` then reports it, the shipped
model and the fusion on the evaluation-only sets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from classifiers.build import build
from classifiers.config import ClassifiersConfig
from classifiers.embed_cache import EmbeddingCache
from classifiers.evaluate import EvalRow, eval_items, set_rows, text_probabilities
from classifiers.heads import Calibration, Heads
from classifiers.manifest import load_training
from classifiers.taxonomy import LEARNED, UNSAFE
from classifiers.train import (
    TrainOptions,
    calibrate_probabilities,
    embedding_cache,
    fit_heads,
    label_matrix,
    split,
)

__all__ = ["Candidate", "compare"]

Array = npt.NDArray[np.float32]


@dataclass(slots=True)
class Candidate:
    name: str
    val_probs: Array
    thresholds: dict[str, float]
    report: dict[str, Any]
    rows: list[EvalRow] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        aps = [m["auprc"] for m in self.report.values() if m.get("auprc") is not None]
        unsafe = self.report[UNSAFE]
        return {
            "candidate": self.name,
            "unsafe_prevalence": round(unsafe["positives"] / unsafe["n"], 4),
            "unsafe_auprc": unsafe["auprc"],
            "unsafe_recall": unsafe["recall"],
            "unsafe_fpr": unsafe["fpr"],
            "macro_auprc": round(float(np.mean(aps)), 4),
            "injection_auprc": self.report["prompt_injection"]["auprc"],
            "jailbreak_auprc": self.report["jailbreak"]["auprc"],
        }


def _candidate(name: str, val_probs: Array, y_val: Array, known_val: Array) -> Candidate:
    thresholds, report = calibrate_probabilities(val_probs, y_val, known_val)
    return Candidate(name, val_probs, thresholds, report)


def compare(
    config: ClassifiersConfig,
    data_dir: Path | None,
    model_dir: Path,
    layers: Sequence[int],
    *,
    options: TrainOptions | None = None,
    evaluate: bool = False,
    limit: int | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Validation summaries of every candidate, and with ``evaluate`` the eval rows of the chosen ones.

    ``data_dir`` None: the seed examples only (and no evaluation).
    """
    from classifiers.probe import HiddenStateEncoder

    if evaluate and data_dir is None:
        raise ValueError("evaluation needs the data directory")
    options = options or TrainOptions(standardize=True)  # z-scored: see TrainOptions.standardize
    layers = sorted(set(layers))  # the encoder concatenates the layers in this order
    started = time.perf_counter()
    examples = load_training(data_dir)
    train_set, val_set = split(examples, options.val_fraction)
    y_train, known_train = label_matrix(train_set)
    y_val, known_val = label_matrix(val_set)
    log(f"examples: {len(examples)} (train {len(train_set)}, validation {len(val_set)})")

    artifacts = build(config)
    shipped = Heads.load(artifacts.heads)
    shipped_th = Calibration.load(artifacts.calibration).thresholds
    encoder_cache = embedding_cache(config, artifacts)
    baseline = _candidate(
        f"{config.encoder} (shipped heads)",
        shipped(encoder_cache.first_windows([e.text for e in val_set])),
        y_val,
        known_val,
    )

    probe = HiddenStateEncoder(
        model_dir, layers, max_tokens=config.max_tokens, max_windows=config.max_windows
    )
    probe_cache = EmbeddingCache(
        config.cache_dir / "embeddings" / f"{probe.name}.{config.max_tokens}.npz", probe
    )
    g_train = probe_cache.first_windows([e.text for e in train_set])
    g_val = probe_cache.first_windows([e.text for e in val_set])
    log(f"embedded in {time.perf_counter() - started:.0f}s")

    width = g_train.shape[1] // len(layers)
    model_name = probe.name.rsplit("-L", 1)[0]
    slices = {f"{model_name} layer {n}": [n] for n in layers}
    for k in range(2, len(layers) + 1):  # the first k probed layers: a cheaper probe runs fewer blocks
        slices[f"{model_name} layers {'+'.join(map(str, layers[:k]))}"] = layers[:k]
    probes: dict[str, tuple[Heads, Any]] = {}
    candidates = [baseline]
    fusions: dict[str, Candidate] = {}
    for name, chosen in slices.items():
        cols = np.concatenate(
            [np.arange(i * width, (i + 1) * width) for i, n in enumerate(layers) if n in chosen]
        )
        heads = fit_heads(g_train[:, cols], y_train, known_train, options)
        probes[name] = (heads, cols)
        candidates.append(_candidate(name, heads(g_val[:, cols]), y_val, known_val))
        fusions[name] = _candidate(
            f"mean of {baseline.name} and {name}",
            _mean(baseline.val_probs, candidates[-1].val_probs),
            y_val,
            known_val,
        )
        log(f"  {candidates[-1].summary()}")
        log(f"  {fusions[name].summary()}")
    best = max(candidates[1:], key=lambda c: c.summary()["unsafe_auprc"] or 0.0)
    fusion = fusions[best.name]
    candidates += [f for name, f in fusions.items() if name != best.name] + [fusion]

    if evaluate and data_dir is not None:
        best_heads, best_cols = probes[best.name]
        for eval_set, items in eval_items(data_dir, limit=limit):
            texts = [it.text for it in items]
            p_base = text_probabilities(encoder_cache, shipped, texts)
            p_probe = text_probabilities(probe_cache, lambda e: best_heads(e[:, best_cols]), texts)
            baseline.rows += set_rows(eval_set, items, p_base, shipped.names, shipped_th)
            best.rows += set_rows(eval_set, items, p_probe, LEARNED, best.thresholds)
            fusion.rows += set_rows(eval_set, items, _mean(p_base, p_probe), LEARNED, fusion.thresholds)
            log(f"{eval_set.name}: {len(items)} items ({time.perf_counter() - started:.0f}s)")
    return {
        "layers": list(layers),
        "model": model_dir.name,
        "chosen": best.name,
        "validation": [c.summary() for c in candidates],
        "evaluation": {c.name: [r.to_json() for r in c.rows] for c in candidates if c.rows},
    }


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| candidate | val `unsafe` AUPRC | recall (FPR) at the 5 % cap | macro AUPRC "
        "| injection AUPRC | jailbreak AUPRC |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in result["validation"]:
        lines.append(
            f"| {s['candidate']} | {s['unsafe_auprc']:.3f} | "
            f"{s['unsafe_recall']:.2f} ({s['unsafe_fpr']:.3f}) | "
            f"{s['macro_auprc']:.3f} | {s['injection_auprc']:.3f} | {s['jailbreak_auprc']:.3f} |"
        )
    evaluation: dict[str, list[dict[str, Any]]] = result["evaluation"]
    if evaluation:
        keys = [(r["set"], r["group"]) for r in next(iter(evaluation.values()))]
        keys = [k for k in keys if k[1] == "all" or k[0] == "multijail"]
        lines += [
            "",
            "| set | group | " + " | ".join(evaluation) + " |",
            "|---|---|" + "---|" * len(evaluation),
        ]
        for key in keys:
            cells = []
            for rows in evaluation.values():
                r = next(r for r in rows if (r["set"], r["group"]) == key)
                cells.append(_cell(r))
            lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean(a: Array, b: Array) -> Array:
    return ((a + b) / 2).astype(np.float32)


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _cell(row: dict[str, Any]) -> str:
    if row["fpr"] is None:  # positives only: recall is the measure
        return f"recall {_f(row['recall'])}"
    return f"F1 {_f(row['f1'])} / FPR {_f(row['fpr'])} / AP {_f(row['auprc'])}"


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
