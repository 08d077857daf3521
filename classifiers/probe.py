"""A probe on a causal language model's hidden states: the local model as the encoder.

The gateway's local model (gemma-3-270m by default) is multilingual and, when it serves, computes
these hidden states anyway during prefill. ``HiddenStateEncoder`` has the ``Encoder`` interface the
embedding cache, training and evaluation use (``windows``/``first_windows``/``embed_windows``): it
runs the model's first ``max(layers)`` decoder blocks in torch and returns, per window, the mean over
tokens (the BOS attention sink left out) of each chosen layer's hidden state, L2-normalized per layer
and concatenated. Training only: measured against the ONNX sentence encoder in docs/classifiers.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["HiddenStateEncoder"]

Array = npt.NDArray[np.float32]


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
        from transformers import AutoModelForCausalLM

        if not layers or min(layers) < 1:
            raise ValueError(f"layers must be 1-based block indices, got {list(layers)}")
        torch.set_num_threads(threads)
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(model_dir), local_files_only=True, dtype=torch.float32
        )
        base = model.model
        if max(layers) > len(base.layers):
            raise ValueError(f"{model_dir.name} has {len(base.layers)} blocks; asked for {max(layers)}")
        base.layers = base.layers[: max(layers)]  # the blocks after the last probed one never run
        self._model = base.eval()
        self._layers = tuple(layers)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._bos = int(model.config.bos_token_id)
        self._pad = int(model.config.pad_token_id if model.config.pad_token_id is not None else 0)
        self._max_tokens = max_tokens
        self._max_windows = max_windows
        self._batch_size = batch_size
        self.name = f"{model_dir.name}-L{'-'.join(map(str, self._layers))}"

    def windows(self, texts: Sequence[str]) -> tuple[list[list[int]], list[int]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        width = self._max_tokens - 1
        windows: list[list[int]] = []
        owners: list[int] = []
        for i, enc in enumerate(encodings):
            ids = enc.ids
            chunks = [ids[j : j + width] for j in range(0, max(len(ids), 1), width)]
            if len(chunks) > self._max_windows:
                chunks = [*chunks[: self._max_windows - 1], ids[-width:]]
            for chunk in chunks:
                windows.append([self._bos, *chunk])
                owners.append(i)
        return windows, owners

    def first_windows(self, texts: Sequence[str]) -> list[list[int]]:
        windows, owners = self.windows(texts)
        first: dict[int, list[int]] = {}
        for window, owner in zip(windows, owners, strict=True):
            first.setdefault(owner, window)
        return [first[i] for i in range(len(texts))]

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
                captured = self._forward(ids, mask)
                pool = mask.clone().float()
                pool[:, 0] = 0.0  # the BOS position is an attention sink with a huge norm
                pool[pool.sum(1) == 0, 0] = 1.0  # an empty text: the BOS state is all there is
                weights = (pool / pool.sum(1, keepdim=True)).unsqueeze(-1)
                parts = []
                for states in captured:
                    mean = (states.float() * weights).sum(1)
                    parts.append(torch.nn.functional.normalize(mean, dim=-1))
                vecs = torch.cat(parts, dim=-1).numpy()
                if out.shape[1] == 0:
                    out = np.zeros((len(windows), vecs.shape[1]), dtype=np.float32)
                out[idx] = vecs
        return out

    def _forward(self, ids: Any, mask: Any) -> list[Any]:
        """Each probed block's output (the residual stream after it, before any final norm)."""
        captured: dict[int, Any] = {}
        handles = [
            self._model.layers[layer - 1].register_forward_hook(
                lambda _m, _i, out, layer=layer: captured.__setitem__(
                    layer, out[0] if isinstance(out, tuple) else out
                )
            )
            for layer in self._layers
        ]
        try:
            self._model(input_ids=ids, attention_mask=mask, use_cache=False)
        finally:
            for handle in handles:
                handle.remove()
        return [captured[layer] for layer in self._layers]
