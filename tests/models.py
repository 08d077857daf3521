"""Small models for tests that need a real architecture but not real weights."""

from __future__ import annotations

import shutil
from pathlib import Path


def tiny_gemma(target: Path, tokenizer_from: Path, layers: int) -> Path:
    """A random-weight Gemma 3 checkpoint with ``layers`` blocks and the real model's tokenizer."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=262144, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=64,
    )  # fmt: skip
    Gemma3ForCausalLM(config).save_pretrained(target)
    shutil.copy(tokenizer_from / "tokenizer.json", target / "tokenizer.json")
    return target
