"""How the heads are trained: an MLP over the embedding (shared hidden layer, one sigmoid per head),
masked BCE (a head learns only from the examples whose label for it is known, positives re-weighted
per head), on z-scored features folded back into the first layer, so that serving computes the same
numpy MLP (:class:`classifiers.heads.Heads`) at the same cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from classifiers.heads import Heads
from classifiers.taxonomy import LEARNED, UNSAFE
from classifiers.training.calibration import MAX_FPR
from classifiers.training.seed import Example

__all__ = ["TrainOptions", "fit_heads", "label_matrix", "masked_loss", "positive_weights"]


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
