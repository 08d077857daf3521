"""The masked multi-label loss the heads and the LoRA fine-tuning share, and the length-bucketed batches."""

from __future__ import annotations

import random

import pytest
import torch

from classifiers.training.finetune import _batches
from classifiers.training.fit import masked_loss, positive_weights


def test_unknown_labels_do_not_count_and_rare_heads_weigh_more() -> None:
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    known = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    weights = positive_weights(y, known)
    assert weights.tolist() == [3.0, 2.0]  # 3 known negatives per positive; 2 negatives, no positive known
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    logits = torch.zeros(4, 2)
    base = float(masked_loss(loss_fn, logits, y, known))
    flipped = logits.clone()
    flipped[2, 1] = 50.0  # an example whose head-1 label is unknown: nothing changes
    assert float(masked_loss(loss_fn, flipped, y, known)) == pytest.approx(base)
    flipped[0, 0] = -50.0  # a known positive scored as negative: the loss rises
    assert float(masked_loss(loss_fn, flipped, y, known)) > base + 1.0


def test_batches_cover_every_example_once_with_similar_lengths() -> None:
    lengths = [random.Random(i).randint(3, 256) for i in range(1000)]
    batches = _batches(lengths, 32, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) <= 32 for b in batches)
    spread = sorted(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread[len(spread) // 2] < 40  # sorted within pools: the median batch pads little


def test_fit_heads_learns_a_separable_problem() -> None:
    import numpy as np

    from classifiers.training.fit import TrainOptions, fit_heads

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, :2] > 0).astype("float32")
    heads = fit_heads(x, y, np.ones_like(y), TrainOptions(hidden=0, epochs=50, batch_size=16, lr=0.05))
    assert ((heads(x) > 0.5) == (y > 0.5)).mean() > 0.95


def test_standardized_heads_fold_the_scaling_and_ignore_each_features_offset_and_scale() -> None:
    """Features like a language model's pooled states: one huge dimension, the signal in tiny ones.
    With ``standardize`` the heads learn it, the z-scoring is folded into plain numpy heads, and an
    affine change of each feature (offset and scale) gives the same probabilities."""
    import numpy as np

    from classifiers.training.fit import TrainOptions, fit_heads

    rng = np.random.default_rng(0)
    signal = rng.normal(size=(256, 4)).astype("float32")
    x = np.concatenate([1e-3 * signal, 100 + rng.normal(size=(256, 1))], axis=1).astype("float32")
    y = (signal[:, :2] > 0).astype("float32")
    options = TrainOptions(hidden=16, epochs=40, batch_size=32, lr=0.01, dropout=0.0, standardize=True)
    heads = fit_heads(x, y, np.ones_like(y), options)
    assert ((heads(x) > 0.5) == (y > 0.5)).mean() > 0.9
    scale, offset = rng.uniform(0.1, 10, size=5).astype("float32"), rng.normal(size=5).astype("float32")
    moved = (x * scale + offset).astype("float32")
    np.testing.assert_allclose(fit_heads(moved, y, np.ones_like(y), options)(moved), heads(x), atol=1e-2)
    plain_options = TrainOptions(hidden=16, epochs=40, batch_size=32, lr=0.01, standardize=False)
    plain = fit_heads(x, y, np.ones_like(y), plain_options)
    assert ((plain(x) > 0.5) == (y > 0.5)).mean() < 0.8  # without it the tiny signal is not learned


def test_fit_heads_gives_the_same_heads_every_run_and_leaves_torch_threads_as_they_were() -> None:
    """`railguard classifiers train` must give the same heads every run on one machine; with
    multi-threaded CPU kernels a 1,280-feature probe's heads differed run to run, on one thread not."""
    import numpy as np

    from classifiers.taxonomy import LEARNED
    from classifiers.training.fit import TrainOptions, fit_heads

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 1280)).astype(np.float32)
    y = (x[:, : len(LEARNED)] > 0).astype(np.float32)
    known = np.ones_like(y)
    before = torch.get_num_threads()
    runs = [fit_heads(x, y, known, TrainOptions(epochs=2, hidden=64)) for _ in range(2)]
    assert torch.get_num_threads() == before
    for first, second in zip(runs[0].weights + runs[0].biases, runs[1].weights + runs[1].biases, strict=True):
        assert first.tobytes() == second.tobytes()
