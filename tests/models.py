"""Small models for tests that need a real architecture but not real weights."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


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


def mean_pooled_bert(model: Any) -> Any:
    """``model`` (a transformers BERT) as ``classifiers.export.encoder.load_torch`` wraps an encoder:
    ``.model`` the BERT, ``(input_ids, attention_mask) -> `` its L2-normalized mean-pooled last hidden
    state."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)

    return Pooled().eval()
