"""A probe on a causal language model's hidden states: the local model as the encoder.

The gateway's local model (gemma-3-270m by default) is multilingual and, when it serves, computes
these hidden states anyway during prefill. ``HiddenStateEncoder`` has the ``Encoder`` interface the
embedding cache, training and evaluation use (``windows``/``first_windows``/``embed_windows``): it
runs the model's first ``max(layers)`` decoder blocks in torch and returns, per window, the mean over
tokens (the BOS attention sink left out) of each chosen block's output (the residual stream),
L2-normalized per layer and concatenated. ``load_probe_module`` is that computation as one torch
module ``(input_ids, attention_mask) -> features``, written out (embedding, causal mask, rotary
positions, blocks, pooling) so that it traces to ONNX like the sentence encoders do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from classifiers.runtime import first_of, split_windows
from classifiers.torchlock import MODEL_BUILD_LOCK

__all__ = ["HiddenStateEncoder", "load_probe_module"]

Array = npt.NDArray[np.float32]


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


class HiddenStateEncoder:
    def __init__(
        self,
        model_dir: Path,
        layers: Sequence[int],
        *,
        max_tokens: int = 256,
        max_windows: int = 4,
        batch_size: int = 16,
        threads: int = 2,
    ):
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoConfig

        torch.set_num_threads(threads)
        self._layers = tuple(sorted(set(layers)))
        self._module = load_probe_module(model_dir, self._layers)
        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._bos = int(config.bos_token_id)
        self._pad = int(config.pad_token_id if config.pad_token_id is not None else 0)
        self._max_tokens = max_tokens
        self._max_windows = max_windows
        self._batch_size = batch_size
        self.name = f"{model_dir.name}-L{'-'.join(map(str, self._layers))}"

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        """BOS + up to ``max_tokens - 1`` tokens per window (no template, no EOS)."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ids = [enc.ids for enc in encodings]
        return split_windows(ids, self._max_tokens - 1, self._max_windows, head=[self._bos])

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]:
        return first_of(*self.windows(texts), len(texts))

    def embed_windows(self, windows: Sequence[Sequence[int]]) -> Array:
        import torch

        order = sorted(range(len(windows)), key=lambda k: len(windows[k]))
        out = np.zeros((len(windows), 0), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                idx = order[start : start + self._batch_size]
                width = max(len(windows[k]) for k in idx)
                ids = torch.full((len(idx), width), self._pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, k in enumerate(idx):  # right padding: causal attention never sees it
                    ids[row, : len(windows[k])] = torch.tensor(windows[k])
                    mask[row, : len(windows[k])] = 1
                vecs = self._module(ids, mask).numpy()
                if out.shape[1] == 0:
                    out = np.zeros((len(windows), vecs.shape[1]), dtype=np.float32)
                out[idx] = vecs
        return out
