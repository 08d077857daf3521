"""Steering vectors by difference of means over contrastive prompt sets, at every layer.

For each prompt, the residual stream after every decoder layer is read at the last `positions`
tokens of the chat-formatted prompt (the end of the user turn and the opening of the model's turn,
where Arditi et al. find the refusal direction); the vector of layer `i` is the mean over the
positive set minus the mean over the negative set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from steering.hooks import decoder_layers
from steering.prompts import chat_prompt

__all__ = ["difference_of_means", "mean_activations", "prompt_states", "tokenize_left_padded"]


def tokenize_left_padded(
    tokenizer: Any, prompts: Sequence[str], *, formatted: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask; prompts are chat-formatted unless `formatted` already."""
    texts = prompts if formatted else [chat_prompt(tokenizer, p) for p in prompts]
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(r) for r in rows)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


@torch.inference_mode()
def prompt_states(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    positions: int = 1,
    batch_size: int = 8,
    formatted: bool = False,
) -> torch.Tensor:
    """`[prompts, layers, hidden]`: each prompt's residual stream after each layer, averaged over its
    last `positions` tokens."""
    layers = decoder_layers(model)
    captured: dict[int, torch.Tensor] = {}

    def capture(index: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            captured[index] = hidden[:, -positions:, :].float().mean(dim=1)

        return hook

    handles = [layer.register_forward_hook(capture(i)) for i, layer in enumerate(layers)]
    states = []
    try:
        for start in range(0, len(prompts), batch_size):
            ids, mask = tokenize_left_padded(
                tokenizer, prompts[start : start + batch_size], formatted=formatted
            )
            positions_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
            model(input_ids=ids, attention_mask=mask, position_ids=positions_ids, logits_to_keep=1)
            states.append(torch.stack([captured[i] for i in range(len(layers))], dim=1))
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(states)


def mean_activations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    positions: int = 1,
    batch_size: int = 8,
    formatted: bool = False,
) -> torch.Tensor:
    """`[layers, hidden]`: the mean residual stream after each layer over the prompts' last positions."""
    states = prompt_states(
        model, tokenizer, prompts, positions=positions, batch_size=batch_size, formatted=formatted
    )
    return states.mean(dim=0)


def difference_of_means(
    model: Any,
    tokenizer: Any,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    positions: int = 1,
    batch_size: int = 8,
) -> dict[int, torch.Tensor]:
    """`{layer: mean(positive) - mean(negative)}` for every decoder layer."""
    pos = mean_activations(model, tokenizer, positive, positions=positions, batch_size=batch_size)
    neg = mean_activations(model, tokenizer, negative, positions=positions, batch_size=batch_size)
    return {layer: (pos[layer] - neg[layer]).contiguous() for layer in range(pos.shape[0])}
