"""Choosing one row's next token: processors, then greedy or temperature + top-p with the row's
generator."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import torch

from gateway.backends.local.params import LogitsProcessor, SamplingParams

__all__ = ["make_generator", "next_token"]


def make_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    # OpenAI's seed is any integer; torch takes 64 bits.
    generator.manual_seed(seed % 2**64 if seed is not None else secrets.randbits(63))
    return generator


def next_token(
    logits: torch.Tensor,
    generated: Sequence[int],
    params: SamplingParams,
    processors: Sequence[LogitsProcessor],
    generator: torch.Generator,
) -> int:
    """`logits`: this row's float32 scores over the vocabulary (changed in place by processors)."""
    for processor in processors:
        logits = processor(generated, logits)
    if params.greedy:
        return int(torch.argmax(logits).item())
    scores = logits / params.temperature
    if params.top_p < 1.0:
        scores = _top_p_filter(scores, params.top_p)
    probs = torch.softmax(scores, dim=-1)
    if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:  # every token was banned
        return int(torch.argmax(logits).item())
    return int(torch.multinomial(probs, 1, generator=generator).item())


def _top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches `top_p`."""
    sorted_scores, order = torch.sort(scores, descending=True)
    probs = torch.softmax(sorted_scores, dim=-1)
    drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # the most likely token always stays
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return scores.masked_fill(drop, float("-inf"))
