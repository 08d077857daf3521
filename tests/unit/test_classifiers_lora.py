"""LoRA deltas on a tiny random BERT: training starts from the base model, merging equals the adapter."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from classifiers.encoder import encoder_key
from classifiers.export.lora import merge
from classifiers.training.lora import attach, save


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return BertModel(config).eval()


def embed(model: BertModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state


def test_merged_deltas_equal_the_adapter_and_only_lora_trains(tmp_path: Path) -> None:
    base = tiny_bert()
    adapted = copy.deepcopy(base)
    ids = torch.tensor([[1, 5, 9, 2], [1, 7, 2, 0]])
    modules = attach(adapted, r=4, alpha=8.0)
    assert len(modules) == 2 * 6  # q, k, v, attention out, intermediate, output per layer
    trainable = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    torch.testing.assert_close(embed(adapted, ids), embed(base, ids))  # B = 0: starts as the base
    for module in modules.values():
        torch.nn.init.normal_(module.lora_B, std=0.05)
    adapted_out = embed(adapted, ids)
    assert not torch.allclose(adapted_out, embed(base, ids))
    path = save(modules, tmp_path / "lora.safetensors", r=4, alpha=8.0)
    merged = copy.deepcopy(base)
    assert merge(merged, path) == 12
    torch.testing.assert_close(embed(merged, ids), adapted_out, atol=2e-3, rtol=1e-2)  # fp16 on disk


def test_deltas_for_another_encoder_are_refused(tmp_path: Path) -> None:
    modules = attach(tiny_bert(), r=2, alpha=4.0)
    path = save(modules, tmp_path / "lora.safetensors", r=2, alpha=4.0)
    config = BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32
    )
    with pytest.raises(ValueError, match="does not fit"):
        merge(BertModel(config), path)


def test_the_build_key_follows_the_deltas(tmp_path: Path) -> None:
    source = tmp_path / "weights.bin"
    source.write_bytes(b"x" * 10)
    plain = encoder_key("minilm-l6", source)
    lora = tmp_path / "lora.safetensors"
    assert encoder_key("minilm-l6", source, lora) == plain  # no file: the base build
    lora.write_bytes(b"one")
    first = encoder_key("minilm-l6", source, lora)
    lora.write_bytes(b"two")
    assert plain != first != encoder_key("minilm-l6", source, lora) and first.startswith(plain)
