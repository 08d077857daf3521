"""Token buckets, one per API key, each with two dimensions: requests and tokens per minute.

A bucket starts full (the whole minute's budget) and refills continuously at `limit / 60` per second
up to `limit`. A request takes one request and its tokens at once, or nothing when either is short,
so a refused request costs no budget. `Buckets` is the seam: `LocalBuckets` (this process; the
default) and `gateway.ratelimit.redis.RedisBuckets` (shared by every replica through one Redis).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Buckets", "Budget", "Levels", "LocalBuckets"]


@dataclass(frozen=True)
class Budget:
    """A key's limits; None: that dimension is unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class Levels:
    """A bucket after a take: whether it was taken, and what is left (inf where unlimited)."""

    taken: bool
    requests: float
    tokens: float


class Buckets(Protocol):
    async def take(self, bucket: str, budget: Budget, tokens: int) -> Levels:
        """Take one request and `tokens` from `bucket` if both are there."""
        ...

    async def aclose(self) -> None: ...


def refilled(level: float, elapsed_s: float, limit: int) -> float:
    return min(float(limit), level + max(0.0, elapsed_s) * limit / 60.0)


class LocalBuckets:
    """The buckets in this process's memory: one entry per key that has called."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float, float]] = {}  # bucket: (requests, tokens, at)

    async def take(self, bucket: str, budget: Budget, tokens: int) -> Levels:
        return self.take_now(bucket, budget, tokens)

    def take_now(self, bucket: str, budget: Budget, tokens: int) -> Levels:
        now = self._clock()
        rpm, tpm = budget.requests_per_minute, budget.tokens_per_minute
        saved = self._state.get(bucket)
        requests = math.inf if rpm is None else float(rpm)
        left = math.inf if tpm is None else float(tpm)
        if saved is not None:
            if rpm is not None:
                requests = refilled(saved[0], now - saved[2], rpm)
            if tpm is not None:
                left = refilled(saved[1], now - saved[2], tpm)
        taken = requests >= 1 and left >= tokens
        if taken:
            requests, left = requests - 1, left - tokens
        self._state[bucket] = (requests, left, now)
        return Levels(taken, requests, left)

    async def aclose(self) -> None:
        pass
