"""The encoder split at its early exits, as torch modules that share its weights, and their ONNX export
(what :func:`classifiers.export.build` writes as ``blocks1-3``, ``blocks4-6``, ``blocks7-last``;
:mod:`classifiers.early_exit` runs them). Their composition is the whole encoder."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["export_parts", "split_module"]


def split_module(module: Any, layers: Sequence[int]) -> list[Any]:
    """``module`` (``classifiers.export.encoder.load_torch``'s mean-pooled BERT, smoothed or not) as modules
    sharing its weights, split after each of ``layers``: the first ``(input_ids, attention_mask) ->
    (embedding, hidden)``, the middle ones ``(hidden, attention_mask) -> (embedding, hidden)``, the
    last ``(hidden, attention_mask) ->`` the full encoder's embedding."""
    import torch

    bert = module.model
    blocks = list(bert.encoder.layer)
    if not layers or list(layers) != sorted(set(layers)) or not 0 < layers[0] <= layers[-1] < len(blocks):
        raise ValueError(
            f"exit layers {list(layers)} must rise strictly inside the encoder's {len(blocks)} blocks"
        )

    def run(layers: Any, hidden: Any, mask: Any) -> Any:
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for block in layers:
            out = block(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def pool(hidden: Any, mask: Any) -> Any:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    class First(torch.nn.Module):
        def __init__(self, end: int) -> None:
            super().__init__()
            self.embeddings = bert.embeddings
            self.blocks = torch.nn.ModuleList(blocks[:end])

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
            hidden = run(self.blocks, hidden, attention_mask)
            return pool(hidden, attention_mask), hidden

    class Middle(torch.nn.Module):
        def __init__(self, start: int, end: int) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(blocks[start:end])

        def forward(self, hidden: Any, attention_mask: Any) -> Any:
            hidden = run(self.blocks, hidden, attention_mask)
            return pool(hidden, attention_mask), hidden

    class Last(torch.nn.Module):
        def __init__(self, start: int) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(blocks[start:])

        def forward(self, hidden: Any, attention_mask: Any) -> Any:
            return pool(run(self.blocks, hidden, attention_mask), attention_mask)

    middle = [Middle(a, b) for a, b in itertools.pairwise(layers)]
    return [m.eval() for m in (First(layers[0]), *middle, Last(layers[-1]))]


def export_parts(module: Any, layers: Sequence[int], paths: Sequence[Path]) -> None:
    """Every part of ``module`` split at ``layers`` (:func:`split_module`) to ONNX, one path each
    (batch and sequence axes dynamic)."""
    import torch

    from classifiers.export.encoder import export_graph

    parts = split_module(module, layers)
    if len(paths) != len(parts):
        raise ValueError(f"{len(parts)} parts, {len(paths)} paths")
    ids = torch.tensor([[5, 17, 23, 6], [5, 17, 6, 1]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    export_graph(
        parts[0],
        (ids, mask),
        paths[0],
        inputs={"input_ids": axes, "attention_mask": axes},
        outputs={"embedding": {0: "batch"}, "hidden": axes},
    )
    with torch.no_grad():
        _, hidden = parts[0](ids, mask)
    for part, path in zip(parts[1:], paths[1:], strict=True):
        last = part is parts[-1]
        export_graph(
            part,
            (hidden, mask),
            path,
            inputs={"hidden": axes, "attention_mask": axes},
            outputs={"embedding": {0: "batch"}} | ({} if last else {"hidden_out": axes}),
        )
        if not last:
            with torch.no_grad():
                _, hidden = part(hidden, mask)
