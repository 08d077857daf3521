"""Per-row steering: forward hooks that add a vector to the residual stream of the rows that asked.

`BatchSteering` holds one `[batch, 1, hidden]` delta per steered layer (zeros for rows without
steering); `attach(model)` registers the hooks for the duration of a `with` block, so nothing
outlives the batch. When rows leave the batch, `select(indices)` keeps the deltas aligned with the
remaining rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from gateway.backends.local.params import SteeringVector

__all__ = ["BatchSteering", "decoder_layers"]


def decoder_layers(model: Any) -> Sequence[torch.nn.Module]:
    """The decoder layers of a causal LM, through a PEFT wrapper if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers: Sequence[torch.nn.Module] = base.model.layers
    return layers


class BatchSteering:
    def __init__(self, rows: Sequence[Sequence[SteeringVector]], hidden: int, dtype: torch.dtype):
        self._deltas: dict[int, torch.Tensor] = {}
        for row, vectors in enumerate(rows):
            for steer in vectors:
                if steer.vector.shape != (hidden,):
                    raise ValueError(f"a steering vector must have shape ({hidden},)")
                delta = self._deltas.setdefault(steer.layer, torch.zeros(len(rows), 1, hidden, dtype=dtype))
                delta[row, 0] += steer.vector.to(dtype)

    def __bool__(self) -> bool:
        return bool(self._deltas)

    def select(self, indices: torch.Tensor) -> None:
        self._deltas = {layer: d.index_select(0, indices) for layer, d in self._deltas.items()}

    @contextmanager
    def attach(self, model: Any) -> Iterator[None]:
        layers = decoder_layers(model)
        handles = []
        try:
            for layer in self._deltas:
                if not 0 <= layer < len(layers):
                    raise ValueError(f"steering layer {layer} is out of range 0..{len(layers) - 1}")
                handles.append(layers[layer].register_forward_hook(self._hook(layer)))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, layer: int) -> Any:
        def add_delta(module: torch.nn.Module, args: Any, output: Any) -> Any:
            delta = self._deltas[layer]
            if isinstance(output, tuple):  # older transformers return (hidden_states, ...)
                return (output[0] + delta, *output[1:])
            return output + delta

        return add_delta
