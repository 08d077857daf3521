"""Applying steering vectors with forward hooks that live exactly as long as a `with` block.

`BatchSteering` steers each row of a batch with its own vectors (rows without any get zeros), so
requests that share a forward pass never see each other's steering. It knows two phases, the prompt
(prefill) and generated tokens, and applies a vector only in the phases its `positions` name; the
caller says when generation starts (`generating()`). When rows leave a batch, `select(indices)`
keeps its tensors aligned with the rows that remain.

`steer(model, vectors)` and `ablate(model, direction)` are the single-user forms (every row alike).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch

from steering.types import SteeringVector

__all__ = ["BatchSteering", "ablate", "decoder_layers", "steer"]

_Phase = Literal["prompt", "generated"]
_PHASES: dict[str, tuple[_Phase, ...]] = {
    "all": ("prompt", "generated"),
    "prompt": ("prompt",),
    "generated": ("generated",),
}


def decoder_layers(model: Any) -> Sequence[torch.nn.Module]:
    """The decoder layers of a causal LM, through a PEFT wrapper if there is one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers: Sequence[torch.nn.Module] = base.model.layers
    return layers


class BatchSteering:
    """Per-row additions and ablations; `rows[i]` are the vectors of batch row `i`.

    With `broadcast=True` there is one row of vectors and it applies to every row of any batch.
    """

    def __init__(
        self,
        rows: Sequence[Sequence[SteeringVector]],
        hidden: int,
        dtype: torch.dtype,
        *,
        broadcast: bool = False,
    ) -> None:
        self._adds: dict[tuple[_Phase, int], torch.Tensor] = {}
        self._ablations: dict[tuple[_Phase, int], list[torch.Tensor]] = {}
        self._phase: _Phase = "prompt"
        self._broadcast = broadcast
        size = 1 if broadcast else len(rows)
        for row, vectors in enumerate(rows):
            for steer in vectors:
                if tuple(steer.vector.shape) != (hidden,):
                    raise ValueError(f"a steering vector must have shape ({hidden},)")
                for phase in _PHASES[steer.positions]:
                    key = (phase, steer.layer)
                    if steer.mode == "add":
                        delta = self._adds.setdefault(key, torch.zeros(size, 1, hidden, dtype=dtype))
                        delta[row, 0] += steer.vector.to(dtype)
                    else:
                        unit = torch.zeros(size, 1, hidden, dtype=torch.float32)
                        norm = steer.vector.float().norm()
                        if norm > 0:
                            unit[row, 0] = steer.vector.float() / norm
                        self._ablations.setdefault(key, []).append(unit.to(dtype))

    def __bool__(self) -> bool:
        return bool(self._adds or self._ablations)

    @property
    def layers(self) -> set[int]:
        return {layer for _, layer in (*self._adds, *self._ablations)}

    def generating(self) -> None:
        """From now on the model sees generated tokens: apply the vectors meant for them."""
        self._phase = "generated"

    def prompting(self) -> None:
        """Back to the prompt phase (a new batch through the same hooks)."""
        self._phase = "prompt"

    def select(self, indices: torch.Tensor) -> None:
        if self._broadcast:
            return
        self._adds = {key: d.index_select(0, indices) for key, d in self._adds.items()}
        self._ablations = {
            key: [d.index_select(0, indices) for d in dirs] for key, dirs in self._ablations.items()
        }

    @contextmanager
    def attach(self, model: Any) -> Iterator[BatchSteering]:
        layers = decoder_layers(model)
        handles = []
        try:
            for layer in sorted(self.layers):
                if not 0 <= layer < len(layers):
                    raise ValueError(f"steering layer {layer} is out of range 0..{len(layers) - 1}")
                handles.append(layers[layer].register_forward_hook(self._hook(layer)))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, layer: int) -> Any:
        def steer_output(module: torch.nn.Module, args: Any, output: Any) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output  # older transformers: a tuple
            for direction in self._ablations.get((self._phase, layer), ()):
                hidden = hidden - (hidden * direction).sum(dim=-1, keepdim=True) * direction
            delta = self._adds.get((self._phase, layer))
            if delta is not None:
                hidden = hidden + delta
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return steer_output


def _hidden_size(model: Any) -> int:
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.hidden_size)


@contextmanager
def steer(model: Any, vectors: Sequence[SteeringVector]) -> Iterator[BatchSteering]:
    """Every row of every forward pass inside the block is steered by `vectors`."""
    steering = BatchSteering([vectors], _hidden_size(model), model.dtype, broadcast=True)
    with steering.attach(model):
        yield steering


@contextmanager
def ablate(
    model: Any, direction: torch.Tensor, layers: Sequence[int] | None = None
) -> Iterator[BatchSteering]:
    """Project `direction` out of the residual stream after each of `layers` (default: all)."""
    chosen = range(len(decoder_layers(model))) if layers is None else layers
    vectors = [SteeringVector(layer, direction, mode="ablate") for layer in chosen]
    with steer(model, vectors) as steering:
        yield steering
