"""Stored vectors: safetensors + JSON sidecar, the GGUF control-vector format, the store, extraction."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from gateway.backends.local.template import prompt_ids
from gateway.backends.local.testing import byte_tokenizer, tiny_gemma
from steering.extract import difference_of_means, mean_activations
from steering.gguf import read_control_vector, write_control_vector
from steering.prompts import chat_prompt, read_prompts, shipped
from steering.types import Condition
from steering.vectors import SHIPPED_DIR, StoredVector, VectorNotFoundError, VectorStore


def stored(name="test", layers=(1,), scale=2.0) -> StoredVector:
    directions = {i: torch.arange(64, dtype=torch.float32) * (i + 1) for i in (0, 1)}
    return StoredVector(name, "tiny", directions, layers, scale=scale, method={"kind": "test"})


def test_save_and_load_round_trip(tmp_path):
    vector = stored()
    path = vector.save(tmp_path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["layers"] == [1] and sidecar["scale"] == 2.0 and sidecar["hidden_size"] == 64
    assert sidecar["positions"] == "all" and sidecar["method"] == {"kind": "test"}
    loaded = StoredVector.load(path)
    assert loaded.layers == (1,) and loaded.scale == 2.0 and loaded.model == "tiny"
    torch.testing.assert_close(loaded.directions[1], vector.directions[1])


def test_request_scale_multiplies_the_stored_scale():
    (vector,) = stored(scale=2.0).steering(-0.5)
    assert vector.layer == 1
    torch.testing.assert_close(vector.vector, stored().directions[1] * -1.0)


def test_gguf_round_trip_keeps_layers_and_scaled_directions(tmp_path):
    vector = stored(layers=(1,), scale=2.0)
    vector = StoredVector(
        "g", "tiny", {1: vector.directions[1], 3: vector.directions[1] * 3}, (1, 3), scale=2.0
    )
    path = write_control_vector(vector, tmp_path / "v.gguf")
    back = read_control_vector(path)
    assert back.model == "tiny" and back.layers == (1, 3) and back.scale == 1.0
    torch.testing.assert_close(back.directions[3], vector.directions[3] * 2.0)
    store = VectorStore([tmp_path])  # a .gguf in a store directory resolves by name too
    assert store.load("v").layers == (1, 3)


def test_gguf_cannot_hold_layer_zero(tmp_path):
    with pytest.raises(ValueError, match="layer 0"):
        write_control_vector(stored(layers=(0,)), tmp_path / "v.gguf")


def test_store_finds_names_in_order_and_refuses_unknown(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    stored("shared", scale=1.0).save(first)
    stored("shared", scale=3.0).save(second)
    stored("other").save(second)
    store = VectorStore([first, second])
    assert store.names() == ["other", "shared"]
    assert store.load("shared").scale == 1.0
    for bad in ("missing", "../etc/passwd"):
        with pytest.raises(VectorNotFoundError):
            store.load(bad)


def test_the_shipped_refusal_vector_is_for_the_embedded_model():
    vector = VectorStore([SHIPPED_DIR]).load("refusal")
    assert vector.hidden_size == 640 and vector.model == "gemma-3-270m"
    assert vector.evaluation and (SHIPPED_DIR / "refusal.safetensors").stat().st_size < 64_000


def test_difference_of_means_is_positive_minus_negative_per_layer():
    tokenizer = byte_tokenizer()
    model = tiny_gemma(len(tokenizer), seed=1)
    positive, negative = ["kill it now", "hurt them"], ["bake bread", "plant a tree"]
    directions = difference_of_means(model, tokenizer, positive, negative, batch_size=1)
    assert sorted(directions) == [0, 1] and directions[0].shape == (64,)
    expected = mean_activations(model, tokenizer, positive) - mean_activations(model, tokenizer, negative)
    torch.testing.assert_close(directions[1], expected[1], atol=1e-5, rtol=1e-4)


def test_chat_prompt_matches_the_gateway_template():
    tokenizer = byte_tokenizer()
    text = chat_prompt(tokenizer, "How do I bake bread?")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == prompt_ids(tokenizer, [{"role": "user", "content": "How do I bake bread?"}])


def test_shipped_prompt_sets_have_tuning_and_held_out_splits(tmp_path):
    for name in ("harmful", "harmless"):
        prompts = shipped(name)
        assert len(prompts.tune) >= 32 and len(prompts.held_out) >= 20
        assert not set(prompts.tune) & set(prompts.held_out)
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("goal,target\nfirst,x\nsecond,y\n")
    assert read_prompts(csv_file).tune == ("first", "second")


def test_the_cli_help_does_not_import_torch():
    code = (
        "import sys; from steering.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "extract" in result.stdout


def test_cli_lists_exports_and_imports(tmp_path, capsys):
    from steering.cli import main

    assert main(["list"]) == 0
    assert "refusal\tmodel=gemma-3-270m" in capsys.readouterr().out
    stored("mine", layers=(1,)).save(tmp_path)
    assert main(["export", "mine", str(tmp_path / "mine.gguf"), "--dir", str(tmp_path)]) == 0
    assert main(["import", str(tmp_path / "mine.gguf"), "back", "--out", str(tmp_path / "out")]) == 0
    assert VectorStore([tmp_path / "out"]).load("back").layers == (1,)
    assert main(["eval", "refusal"]) == 2  # without a refusal detector: a message, not a traceback
    assert "refusal detector" in capsys.readouterr().err


def conditional(name="cond") -> StoredVector:
    condition = Condition(1, torch.linspace(-1, 1, 64), 0.25)
    return replace(stored(name, layers=(0,)), condition=condition)


def test_a_condition_survives_save_and_load_and_reaches_the_steering(tmp_path):
    path = conditional().save(tmp_path)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["condition"] == {"layer": 1, "threshold": 0.25}
    loaded = StoredVector.load(path)
    assert loaded.condition is not None and loaded.condition.layer == 1
    torch.testing.assert_close(loaded.condition.direction, torch.linspace(-1, 1, 64))
    (vector,) = loaded.steering(1.0)
    assert vector.condition is loaded.condition
    (forced,) = loaded.unconditional().steering(1.0)
    assert forced.condition is None


def test_a_sidecar_naming_a_condition_the_file_lacks_is_refused(tmp_path):
    path = stored("plain").save(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["condition"] = {"layer": 1, "threshold": 0.2}
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="condition"):
        StoredVector.load(path)


def test_gguf_export_of_a_conditional_vector_needs_consent(tmp_path):
    vector = replace(conditional(), layers=(1,))
    with pytest.raises(ValueError, match="conditional"):
        write_control_vector(vector, tmp_path / "c.gguf")
    back = read_control_vector(write_control_vector(vector, tmp_path / "c.gguf", drop_condition=True))
    assert back.condition is None and back.layers == (1,)
