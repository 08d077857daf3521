"""Steering hooks on a tiny random Gemma 3: per-row additions, phases, ablation, hook lifetime."""

from __future__ import annotations

import pytest
import torch

from gateway.backends.local.testing import tiny_gemma
from steering.hooks import BatchSteering, ablate, decoder_layers, steer
from steering.types import SteeringVector

HIDDEN = 64


@pytest.fixture(scope="module")
def model():
    return tiny_gemma(300, seed=3)


def logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def direction(seed: int, scale: float = 20.0) -> torch.Tensor:
    return torch.randn(HIDDEN, generator=torch.Generator().manual_seed(seed)) * scale


def test_only_the_rows_that_asked_are_steered(model):
    ids = torch.tensor([[5, 6, 7], [5, 6, 7], [8, 9, 10]])
    plain = logits(model, ids)
    rows = [[SteeringVector(1, direction(1))], [], [SteeringVector(0, direction(2))]]
    steering = BatchSteering(rows, HIDDEN, model.dtype)
    with steering.attach(model):
        steered = logits(model, ids)
    assert not torch.allclose(steered[0], plain[0])
    torch.testing.assert_close(steered[1], plain[1])
    assert not torch.allclose(steered[2], plain[2])


def test_hooks_are_removed_when_the_block_ends(model):
    ids = torch.tensor([[5, 6, 7]])
    plain = logits(model, ids)
    with steer(model, [SteeringVector(1, direction(1))]):
        assert not torch.allclose(logits(model, ids), plain)
    torch.testing.assert_close(logits(model, ids), plain)
    assert all(not layer._forward_hooks for layer in decoder_layers(model))


def test_positions_select_the_phase(model):
    ids = torch.tensor([[5, 6, 7]])
    plain = logits(model, ids)
    steering = BatchSteering([[SteeringVector(1, direction(1), positions="generated")]], HIDDEN, model.dtype)
    with steering.attach(model):
        torch.testing.assert_close(logits(model, ids), plain)  # the prompt is left alone
        steering.generating()
        assert not torch.allclose(logits(model, ids), plain)
    prompt_only = BatchSteering([[SteeringVector(1, direction(1), positions="prompt")]], HIDDEN, model.dtype)
    with prompt_only.attach(model):
        assert not torch.allclose(logits(model, ids), plain)
        prompt_only.generating()
        torch.testing.assert_close(logits(model, ids), plain)


def test_select_keeps_deltas_aligned_with_remaining_rows(model):
    ids = torch.tensor([[5, 6, 7], [5, 6, 7]])
    rows = [[], [SteeringVector(1, direction(4))]]
    steering = BatchSteering(rows, HIDDEN, model.dtype)
    with steering.attach(model):
        both = logits(model, ids)
        steering.select(torch.tensor([1]))
        second_only = logits(model, ids[1:])
    torch.testing.assert_close(second_only[0], both[1])


def test_ablation_projects_the_direction_out(model):
    ids = torch.tensor([[5, 6, 7, 8]])
    unit = direction(5) / direction(5).norm()
    captured = {}
    layer = decoder_layers(model)[1]

    def capture(module, args, output):
        captured["h"] = output

    with ablate(model, direction(5), layers=[1]):
        handle = layer.register_forward_hook(capture)  # registered after: sees the ablated output
        logits(model, ids)
        handle.remove()
    assert torch.allclose(captured["h"] @ unit, torch.zeros(1, 4), atol=1e-4)
    with torch.inference_mode():
        handle = layer.register_forward_hook(capture)
        model(input_ids=ids)
        handle.remove()
    assert (captured["h"] @ unit).abs().max() > 1e-2  # without ablation the component is there


def test_a_vector_of_the_wrong_size_is_refused(model):
    with pytest.raises(ValueError, match="shape"):
        BatchSteering([[SteeringVector(0, torch.ones(3))]], HIDDEN, model.dtype)


def test_a_layer_out_of_range_is_refused(model):
    steering = BatchSteering([[SteeringVector(7, direction(1))]], HIDDEN, model.dtype)
    with pytest.raises(ValueError, match="out of range"), steering.attach(model):
        pass
