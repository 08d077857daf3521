"""A steering vector learned by gradient descent (Subramani et al. 2022; Cao et al. 2024, BiPO).

Difference of means finds a direction the model already uses; on a *base* model, which never
refuses, no such direction makes it say a refusal (docs/steering.md). Here the vector itself is the
only trainable parameter: added to the residual stream after one layer, it is optimised so that the
frozen model says the target answers to the examples' prompts (e.g. harmful prompts -> refusals).
It is a soft prompt of one vector, steering every position it is added to; on which prompts it
applies is a `Condition`'s business (`steering/condition.py`), not this objective's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steering.hooks import decoder_layers

__all__ = ["Example", "OptimizeConfig", "optimize_vector"]


@dataclass(frozen=True)
class Example:
    """`prompt` (already chat-formatted, or plain text) followed by `target`, whose tokens are scored."""

    prompt: str
    target: str


@dataclass(frozen=True)
class OptimizeConfig:
    steps: int = 60
    lr: float = 0.05
    batch_size: int = 8
    seed: int = 0


def _batch(tokenizer: Any, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and a mask of the target tokens (the ones scored)."""
    rows, targets = [], []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(ex.target, add_special_tokens=False)["input_ids"]
        rows.append(prompt + target)
        targets.append([0] * len(prompt) + [1] * len(target))
    width = max(len(r) for r in rows)
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, target) in enumerate(zip(rows, targets, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        scored[i, : len(row)] = torch.tensor(target, dtype=torch.bool)
    return ids, mask, scored


def _nll(model: Any, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    ids, mask, scored = batch
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    weights = scored[:, 1:].float()
    return (losses * weights).sum() / weights.sum().clamp(min=1.0)


def optimize_vector(
    model: Any,
    tokenizer: Any,
    layer: int,
    examples: Sequence[Example],
    config: OptimizeConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """The vector (float32, `[hidden]`) to add after decoder layer `layer`; the model is not changed."""
    config = config or OptimizeConfig()
    if not examples:
        raise ValueError("optimising a vector needs examples")
    hidden = int(model.config.get_text_config().hidden_size)
    vector = torch.zeros(hidden, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.Adam([vector], lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    dtype = next(model.parameters()).dtype

    def add(module: torch.nn.Module, args: Any, output: Any) -> Any:
        hidden_states = output[0] if isinstance(output, tuple) else output
        hidden_states = hidden_states + vector.to(dtype)
        return (hidden_states, *output[1:]) if isinstance(output, tuple) else hidden_states

    def sample() -> list[Example]:
        picks = torch.randperm(len(examples), generator=generator)[: config.batch_size].tolist()
        return [examples[i] for i in picks]

    requires_grad = [p.requires_grad for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    handle = decoder_layers(model)[layer].register_forward_hook(add)
    try:
        for step in range(config.steps):
            optimizer.zero_grad()
            loss = _nll(model, _batch(tokenizer, sample()))
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if log and (step % 10 == 0 or step == config.steps - 1):
                log(f"step {step}: loss {float(loss.detach()):.3f}, |v| {float(vector.detach().norm()):.2f}")
    finally:
        handle.remove()
        for parameter, flag in zip(model.parameters(), requires_grad, strict=True):
            parameter.requires_grad_(flag)
    return vector.detach().clone()
