"""Applying steering vectors with forward hooks that live exactly as long as a `with` block.

`BatchSteering` steers each row of a batch with its own vectors (rows without any get zeros), so
requests that share a forward pass never see each other's steering. It knows two phases, the prompt
(prefill) and generated tokens, and applies a vector only in the phases its `positions` name; the
caller says when generation starts (`generating()`). When rows leave a batch, `select(indices)`
keeps its tensors aligned with the rows that remain.

A vector with a `Condition` (CAST) is added only to the rows whose prompt meets it. `read(forward)`
runs the prompt once unsteered (the caller's `forward`), and the hook on the condition's layer sets
each row's gate (1 or 0) from its last prompt token; the gates then hold for the steered prompt pass
and every generated token. Reading first lets the condition sit at any layer, also after the layers
it steers (late layers tell harmful prompts from harmless ones best, early ones steer best).

`steer(model, vectors)` and `ablate(model, direction)` are the single-user forms (every row alike).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch

from steering.types import Condition, SteeringVector

__all__ = ["BatchSteering", "ablate", "decoder_layers", "steer"]

_Phase = Literal["prompt", "generated", "condition"]
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
        # Conditional additions: (phase, layer) -> [(condition index, per-row delta)]; the gates
        # ([batch, 1, 1], one per condition) are set by `read`, in an unsteered pass over the prompt.
        self._gated: dict[tuple[_Phase, int], list[tuple[int, torch.Tensor]]] = {}
        self._conditions: list[tuple[Condition, torch.Tensor]] = []
        self._gates: dict[int, torch.Tensor] = {}
        self._phase: _Phase = "prompt"
        self._broadcast = broadcast
        size = 1 if broadcast else len(rows)
        for row, vectors in enumerate(rows):
            for steer in vectors:
                if tuple(steer.vector.shape) != (hidden,):
                    raise ValueError(f"a steering vector must have shape ({hidden},)")
                if steer.condition is not None:
                    self._add_conditional(row, size, hidden, dtype, steer)
                    continue
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

    def _add_conditional(
        self, row: int, size: int, hidden: int, dtype: torch.dtype, steer: SteeringVector
    ) -> None:
        condition = steer.condition
        assert condition is not None
        if steer.mode != "add":
            raise ValueError("only added vectors can be conditional")
        if tuple(condition.direction.shape) != (hidden,):
            raise ValueError(f"a condition's direction must have shape ({hidden},)")
        index = next((i for i, (c, _) in enumerate(self._conditions) if c is condition), None)
        if index is None:
            index = len(self._conditions)
            unit = condition.direction.float() / condition.direction.float().norm().clamp(min=1e-12)
            self._conditions.append((condition, unit))
        for phase in _PHASES[steer.positions]:
            entries = self._gated.setdefault((phase, steer.layer), [])
            delta = next((d for i, d in entries if i == index), None)
            if delta is None:
                delta = torch.zeros(size, 1, hidden, dtype=dtype)
                entries.append((index, delta))
            delta[row, 0] += steer.vector.to(dtype)

    def __bool__(self) -> bool:
        return bool(self._adds or self._ablations or self._gated)

    @property
    def layers(self) -> set[int]:
        steered = {layer for _, layer in (*self._adds, *self._ablations, *self._gated)}
        return steered | {condition.layer for condition, _ in self._conditions}

    def read(self, forward: Callable[[], Any]) -> None:
        """Decide the gates of conditional vectors: `forward()` runs the batch's prompt, unsteered.

        Without conditional vectors it does nothing (and `forward` is not called).
        """
        if not self._conditions:
            return
        self._phase, self._gates = "condition", {}
        try:
            forward()
        finally:
            self._phase = "prompt"

    def gates(self) -> list[list[bool]]:
        """Per condition, which rows of the current batch meet it (after the prompt's forward pass)."""
        return [
            [bool(g) for g in self._gates[i].flatten().tolist()] if i in self._gates else []
            for i in range(len(self._conditions))
        ]

    def generating(self) -> None:
        """From now on the model sees generated tokens: apply the vectors meant for them."""
        self._phase = "generated"

    def prompting(self) -> None:
        """Back to the prompt phase (a new batch through the same hooks; `read` it first)."""
        self._phase = "prompt"
        self._gates = {}

    def select(self, indices: torch.Tensor) -> None:
        self._gates = {i: gate.index_select(0, indices) for i, gate in self._gates.items()}
        if self._broadcast:
            return
        self._gated = {
            key: [(i, d.index_select(0, indices)) for i, d in entries] for key, entries in self._gated.items()
        }
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
            if self._phase == "condition":
                self._read_conditions(layer, hidden)
                return output
            for direction in self._ablations.get((self._phase, layer), ()):
                hidden = hidden - (hidden * direction).sum(dim=-1, keepdim=True) * direction
            delta = self._adds.get((self._phase, layer))
            if delta is not None:
                hidden = hidden + delta
            for index, gated in self._gated.get((self._phase, layer), ()):
                gate = self._gates.get(index)
                if gate is not None:
                    hidden = hidden + gated * gate
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return steer_output

    def _read_conditions(self, layer: int, hidden: torch.Tensor) -> None:
        for index, (condition, unit) in enumerate(self._conditions):
            if condition.layer == layer:
                last = hidden[:, -1, :].float()
                cosine = (last @ unit) / last.norm(dim=-1).clamp(min=1e-12)
                self._gates[index] = (cosine >= condition.threshold).to(hidden.dtype).view(-1, 1, 1)


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
