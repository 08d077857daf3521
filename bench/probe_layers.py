"""Which of the local model's blocks to probe: heads on gemma-3-270m's hidden states, against the shipped
encoder (how ``gemma-probe``'s blocks 6 and 9 were chosen: docs/classifiers.md, "Why this design").

    .venv/bin/python bench/probe_layers.py [--data-dir ../shared/data] [--layers 6 9 12 15] [--eval]
        [--model-dir <checkpoint>] [--json classifiers-probe.json]   (after `railguard prepare`)

Same examples, split, head recipe and threshold rule as ``railguard classifiers train``, on the
model's hidden states computed in torch (``HiddenStateEncoder``: no ONNX build). For each probed
layer (and the first k of them together) heads are trained on the language model's pooled hidden
states (z-scored, which these features need: without it validation ``unsafe`` AUPRC was 0.92 instead
of 0.98) and calibrated on the validation split; the shipped encoder + heads are scored on the same
validation texts, and so is the late fusion of the two (the mean of their probabilities, thresholds
re-picked on validation). The candidate is chosen on validation only (``unsafe`` AUPRC); ``--eval``
then reports it, the shipped model and the fusion on the evaluation-only sets.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# bench/classifiers.py sits beside this file: keep this folder off the path so `classifiers` is the
# package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from classifiers.config import ClassifiersConfig  # noqa: E402
from classifiers.encoder import ENCODERS  # noqa: E402
from classifiers.evaluation.embeddings import EmbeddingCache, embedding_cache  # noqa: E402
from classifiers.evaluation.evaluate import EvalRow, eval_items, set_rows, text_probabilities  # noqa: E402
from classifiers.export import build  # noqa: E402
from classifiers.export.probe import load_probe_module  # noqa: E402
from classifiers.heads import Calibration, Heads  # noqa: E402
from classifiers.taxonomy import LEARNED, UNSAFE  # noqa: E402
from classifiers.training.calibration import calibrate_probabilities  # noqa: E402
from classifiers.training.fit import TrainOptions, fit_heads, label_matrix  # noqa: E402
from classifiers.training.manifest import load_training, split  # noqa: E402
from classifiers.windows import first_of, split_windows  # noqa: E402

Array = npt.NDArray[np.float32]


class HiddenStateEncoder:
    """The embedding cache's encoder interface (``windows``/``first_windows``/``embed_windows``) on a
    causal LM's pooled hidden states (:func:`classifiers.export.probe.load_probe_module`), in torch."""

    def __init__(
        self,
        model_dir: Path,
        layers: Sequence[int],
        *,
        max_tokens: int = 256,
        max_windows: int = 4,
        batch_size: int = 16,
        threads: int = 2,
    ):
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoConfig

        torch.set_num_threads(threads)
        self._layers = tuple(sorted(set(layers)))
        self._module = load_probe_module(model_dir, self._layers)
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._bos = int(config.bos_token_id)
        self._pad = int(config.pad_token_id if config.pad_token_id is not None else 0)
        self._max_tokens = max_tokens
        self._max_windows = max_windows
        self._batch_size = batch_size
        self.name = f"{model_dir.name}-L{'-'.join(map(str, self._layers))}"

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """BOS + up to ``max_tokens - 1`` tokens per window (no template, no EOS)."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ids = [enc.ids for enc in encodings]
        return split_windows(ids, self._max_tokens - 1, self._max_windows, head=[self._bos])

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]:
        return first_of(*self.windows(texts), len(texts))

    def embed_windows(self, windows: Sequence[Sequence[int]]) -> Array:
        import torch

        order = sorted(range(len(windows)), key=lambda k: len(windows[k]))
        out = np.zeros((len(windows), 0), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                idx = order[start : start + self._batch_size]
                width = max(len(windows[k]) for k in idx)
                ids = torch.full((len(idx), width), self._pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, k in enumerate(idx):  # right padding: causal attention never sees it
                    ids[row, : len(windows[k])] = torch.tensor(windows[k])
                    mask[row, : len(windows[k])] = 1
                vecs = self._module(ids, mask).numpy()
                if out.shape[1] == 0:
                    out = np.zeros((len(windows), vecs.shape[1]), dtype=np.float32)
                out[idx] = vecs
        return out


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


def default_data_dir() -> Path | None:
    candidate = _HERE.parent.parent / "shared" / "data"
    return candidate.resolve() if candidate.is_dir() else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: ../shared/data if present")
    parser.add_argument("--encoder", choices=list(ENCODERS), default="e5-small", help="the baseline")
    parser.add_argument(
        "--cache-dir", type=Path, help="built artefacts (default ~/.cache/railguard/classifiers)"
    )
    parser.add_argument("--artifacts-dir", type=Path, help="the baseline's heads (default: shipped)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a transformers checkpoint (default: the converted gemma-3-270m of `railguard prepare`)",
    )
    parser.add_argument(
        "--layers", type=int, nargs="+", default=[6, 9, 12, 15], help="1-based decoder blocks"
    )
    parser.add_argument(
        "--eval", action="store_true", help="also report the chosen probe on the evaluation sets"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N items per evaluation set")
    parser.add_argument("--json", type=Path, default=Path("classifiers-probe.json"), help="JSON report path")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    if data_dir is None:
        print("no data directory: pass --data-dir (e.g. ../shared/data)", file=sys.stderr)
        return 2
    fields = {k: getattr(args, k) for k in ("encoder", "cache_dir", "artifacts_dir") if getattr(args, k)}
    config = ClassifiersConfig(**fields)
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


if __name__ == "__main__":
    sys.exit(main())
