"""Learned vectors and conditions on a tiny random Gemma 3: the optimiser, the threshold, the fit."""

from __future__ import annotations

import pytest
import torch

from gateway.backends.local.testing import byte_tokenizer, tiny_gemma
from steering.condition import best_threshold, fit_condition
from steering.hooks import steer
from steering.optimize import Example, OptimizeConfig, _batch, _nll, optimize_vector
from steering.types import SteeringVector


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_gemma(len(tokenizer), seed=5)


def test_the_learned_vector_makes_the_target_more_likely_and_leaves_the_model_frozen(model, tokenizer):
    examples = [Example(f"q{i}: ", "no way") for i in range(4)]
    batch = _batch(tokenizer, examples)
    with torch.inference_mode():
        before = float(_nll(model, batch))
    weights = [p.detach().clone() for p in model.parameters()]
    vector = optimize_vector(
        model, tokenizer, 1, examples, config=OptimizeConfig(steps=40, lr=0.5, batch_size=4)
    )
    assert vector.shape == (64,) and not vector.requires_grad
    with torch.inference_mode(), steer(model, [SteeringVector(1, vector)]):
        after = float(_nll(model, batch))
    noise = torch.randn(64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), steer(model, [SteeringVector(1, noise / noise.norm() * vector.norm())]):
        random_direction = float(_nll(model, batch))
    assert after < before - 0.3 and after < random_direction - 0.3  # learned, not just any push
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    assert all(not layer._forward_hooks for layer in model.model.layers)


def test_only_the_target_tokens_are_scored(tokenizer):
    ids, mask, scored = _batch(tokenizer, [Example("abc", "de"), Example("a", "b")])
    assert (
        ids.shape == (2, 5) and ids[0].tolist() == tokenizer("abcde", add_special_tokens=False)["input_ids"]
    )
    assert mask.tolist() == [[1] * 5, [1, 1, 0, 0, 0]]
    assert scored.tolist() == [[False, False, False, True, True], [False, True, False, False, False]]


def test_optimising_without_examples_is_refused(model, tokenizer):
    with pytest.raises(ValueError, match="needs examples"):
        optimize_vector(model, tokenizer, 0, [])


def test_best_threshold_separates_when_it_can():
    threshold, tpr, fpr, margin = best_threshold(torch.tensor([0.8, 0.9, 0.7]), torch.tensor([0.1, 0.3]))
    assert 0.3 < threshold < 0.7 and (tpr, fpr) == (1.0, 0.0) and margin == pytest.approx(0.4)
    threshold, tpr, fpr, _ = best_threshold(torch.tensor([0.5, 0.2]), torch.tensor([0.4, 0.1]))
    assert tpr - fpr == pytest.approx(0.5)  # overlapping: the best cut there is, not a perfect one


def test_fit_condition_reports_the_split_it_found_on_the_chosen_layer(model, tokenizer):
    positive = ["kill them all", "burn it down", "hurt him badly", "steal the car"]
    negative = ["bake bread", "plant a tree", "sing a song", "read a book"]
    fit = fit_condition(model, tokenizer, positive, negative)
    assert fit.condition.layer in (0, 1) and fit.condition.direction.shape == (64,)
    layer_rows = {la: (t, f) for la, t, f in fit.per_layer}
    assert layer_rows[fit.condition.layer] == (fit.tpr, fit.fpr)
    assert fit.tpr - fit.fpr == max(t - f for t, f in layer_rows.values())
    with pytest.raises(ValueError):
        fit_condition(model, tokenizer, positive, [])
