"""Logits processors that ship with the local backend: banned token sequences and OpenAI's
logit_bias.

`BannedSequences` forbids the last token of a sequence whenever the row's output already ends with
the rest of it, so the sequence can never be completed. `banned_phrase_sequences` turns phrases into
the token sequences a model would most likely use for them (as written, with a leading space,
capitalised). Other tokenizations of the same text are not covered: this is a cheap filter, not a
guarantee; the output guard remains the guarantee.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["BannedSequences", "LogitBias", "Penalties", "banned_phrase_sequences"]


class BannedSequences:
    def __init__(self, sequences: Iterable[Sequence[int]]) -> None:
        self._single: list[int] = []
        self._multi: list[tuple[tuple[int, ...], int]] = []
        for sequence in {tuple(s) for s in sequences if s}:
            if len(sequence) == 1:
                self._single.append(sequence[0])
            else:
                self._multi.append((sequence[:-1], sequence[-1]))

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        banned = list(self._single)
        for head, last in self._multi:
            if len(generated) >= len(head) and tuple(generated[-len(head) :]) == head:
                banned.append(last)
        if banned:
            logits[banned] = float("-inf")
        return logits


class Penalties:
    """OpenAI's `frequency_penalty` and `presence_penalty`: each token already generated loses
    `frequency * count + presence` from its score (the prompt does not count)."""

    def __init__(self, frequency: float, presence: float) -> None:
        self._frequency = frequency
        self._presence = presence

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if generated:
            import torch

            tokens, counts = torch.unique(torch.tensor(generated, dtype=torch.long), return_counts=True)
            logits[tokens] -= counts.to(logits.dtype) * self._frequency + self._presence
        return logits


class LogitBias:
    """OpenAI's `logit_bias`: {token id: bias in [-100, 100]} added to the scores."""

    def __init__(self, bias: dict[str, float], vocab_size: int) -> None:
        from gateway.errors import InvalidRequestError

        self._ids: list[int] = []
        self._values: list[float] = []
        for key, value in bias.items():
            if not key.isdigit() or int(key) >= vocab_size or not -100 <= value <= 100:
                raise InvalidRequestError(
                    f"logit_bias: {key!r}: {value} is not a token id with a bias in [-100, 100]",
                    param="logit_bias",
                )
            self._ids.append(int(key))
            self._values.append(float(value))

    def __call__(self, generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if self._ids:
            import torch

            logits[self._ids] += torch.tensor(self._values, dtype=logits.dtype)
        return logits


def banned_phrase_sequences(tokenizer: Any, phrases: Iterable[str]) -> list[tuple[int, ...]]:
    sequences: set[tuple[int, ...]] = set()
    for phrase in phrases:
        phrase = phrase.strip()
        if not phrase:
            continue
        for variant in {phrase, phrase[:1].upper() + phrase[1:], phrase.lower()}:
            for text in (variant, " " + variant):
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                if ids:
                    sequences.add(tuple(ids))
    return sorted(sequences)
