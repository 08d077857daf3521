"""Steering hooks on a tiny random Gemma 3: per-row additions, phases, ablation, hook lifetime."""

from __future__ import annotations

import pytest
import torch

from gateway.backends.local.testing import tiny_gemma
from steering.hooks import BatchSteering, ablate, decoder_layers, steer
from steering.types import Condition, SteeringVector

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


def _cosines_at(model, ids, layer, unit):
    captured = {}

    def capture(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output

    handle = decoder_layers(model)[layer].register_forward_hook(capture)
    logits(model, ids)
    handle.remove()
    last = captured["h"][:, -1, :].float()
    return (last @ unit) / last.norm(dim=-1)


def test_a_conditional_vector_steers_only_the_rows_whose_prompt_meets_it(model):
    ids = torch.tensor([[5, 6, 7], [8, 9, 10], [5, 6, 7]])
    plain = logits(model, ids)
    cond_direction = direction(7)
    cosines = _cosines_at(model, ids, 0, cond_direction / cond_direction.norm())
    assert abs(float(cosines[0] - cosines[1])) > 1e-3  # the two prompts read differently
    threshold = float(cosines[:2].mean())
    meets = [bool(c >= threshold) for c in cosines]
    condition = Condition(0, cond_direction, threshold)
    vector = SteeringVector(1, direction(1), condition=condition)
    steering = BatchSteering([[vector], [vector], []], HIDDEN, model.dtype)
    with steering.attach(model):
        steering.read(lambda: logits(model, ids))
        steered = logits(model, ids)
        assert steering.gates() == [meets]
        steering.generating()  # the gate holds for generated tokens, decided on the prompt
        generated = logits(model, ids[:, -1:])
    for row in (0, 1):
        assert torch.allclose(steered[row], plain[row]) != meets[row]
    torch.testing.assert_close(steered[2], plain[2])  # no vector asked for: untouched whatever it reads
    with torch.inference_mode():
        unsteered_step = model(input_ids=ids[:, -1:]).logits
    for row in (0, 1):
        assert torch.allclose(generated[row], unsteered_step[row]) != meets[row]


def test_a_condition_that_never_holds_leaves_the_model_alone(model):
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    plain = logits(model, ids)
    never = Condition(0, direction(7), threshold=1.01)  # a cosine is at most 1
    always = Condition(0, direction(7), threshold=-1.01)
    with steer(model, [SteeringVector(1, direction(1), condition=never)]) as steering:
        steering.read(lambda: logits(model, ids))
        torch.testing.assert_close(logits(model, ids), plain)
        assert steering.gates() == [[False, False]]
    with steer(model, [SteeringVector(1, direction(1), condition=always)]) as steering:
        torch.testing.assert_close(logits(model, ids), plain)  # not read yet: no row is steered
        steering.read(lambda: logits(model, ids))
        assert not torch.allclose(logits(model, ids), plain)


def test_a_condition_may_be_read_after_the_layer_it_steers(model):
    ids = torch.tensor([[5, 6, 7]])
    plain = logits(model, ids)
    late = Condition(1, direction(7), threshold=-1.01)  # read after layer 1, steering layer 0
    with steer(model, [SteeringVector(0, direction(1), condition=late)]) as steering:
        steering.read(lambda: torch.testing.assert_close(logits(model, ids), plain))  # the read pass is clean
        assert not torch.allclose(logits(model, ids), plain)
