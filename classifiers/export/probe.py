"""A probe on a causal language model's hidden states: the local model as the encoder ``gemma-probe``.

The gateway's local model (gemma-3-270m by default) is multilingual and, when it serves, computes
these hidden states anyway during prefill. ``load_probe_module`` runs the model's first
``max(layers)`` decoder blocks and returns, per window, the mean over tokens (the BOS attention sink
left out) of each chosen block's output (the residual stream), L2-normalized per layer and
concatenated: one torch module ``(input_ids, attention_mask) -> features``, written out (embedding,
causal mask, rotary positions, blocks, pooling) so that it traces to ONNX like the sentence encoders
do (:func:`classifiers.export.encoder.load_torch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from classifiers.torchlock import MODEL_BUILD_LOCK

__all__ = ["load_probe_module"]


def load_probe_module(model_dir: Path, layers: Sequence[int]) -> Any:
    """The first ``max(layers)`` blocks of a Gemma 3 checkpoint + pooling, as one eval-mode module."""
    import torch
    from transformers import AutoModelForCausalLM

    if not layers or min(layers) < 1:
        raise ValueError(f"layers must be 1-based block indices, got {list(layers)}")
    with MODEL_BUILD_LOCK:  # from_pretrained sets torch's default dtype process-wide: see torchlock.py
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(model_dir), local_files_only=True, dtype=torch.float32, attn_implementation="eager"
        )
    base = model.model
    if max(layers) > len(base.layers):
        raise ValueError(f"{model_dir.name} has {len(base.layers)} blocks; asked for {max(layers)}")

    class ProbeFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed_tokens = base.embed_tokens
            self.rotary_emb = base.rotary_emb
            self.blocks = torch.nn.ModuleList(base.layers[: max(layers)])
            self.layer_types = list(base.config.layer_types)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.embed_tokens(input_ids)
            ones = torch.ones_like(input_ids[0], dtype=hidden.dtype)  # [T]
            # causal only: padding is on the right, so no real token ever attends to it; every window
            # is shorter than the sliding window (512), so local and global blocks see the same
            causal = (1.0 - torch.tril(ones[:, None] * ones[None, :])) * -1e9
            causal = causal[None, None]
            positions = (torch.cumsum(ones, 0) - 1).long()[None]
            rotary = {t: self.rotary_emb(hidden, positions, t) for t in set(self.layer_types)}
            pool = attention_mask.to(hidden.dtype) * (positions > 0).to(hidden.dtype)  # BOS left out
            empty = (pool.sum(1, keepdim=True) == 0).to(hidden.dtype)
            pool = pool + empty * (positions == 0).to(hidden.dtype)  # a bare BOS: its state is all
            pool = (pool / pool.sum(1, keepdim=True)).unsqueeze(-1)
            parts = []
            for i, block in enumerate(self.blocks):
                kind = self.layer_types[i]
                hidden = block(hidden, position_embeddings=rotary[kind], attention_mask=causal)
                if i + 1 in layers:
                    parts.append(torch.nn.functional.normalize((hidden * pool).sum(1), dim=-1))
            return torch.cat(parts, dim=-1)

    return ProbeFeatures().eval()
