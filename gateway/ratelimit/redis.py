"""Buckets in Redis, so that every replica of the gateway spends one budget per key.

One Lua script reads, refills, takes and writes a key's bucket atomically, on Redis's clock (replicas'
clocks need not agree). When Redis fails or is slow, the request is decided by an in-process bucket
instead (each replica then grants its own budget) and `on_fallback` counts it; Redis is tried again
after a pause. A request never fails because Redis did.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from gateway.ratelimit.buckets import Buckets, Budget, Levels

__all__ = ["RedisBuckets"]

log = logging.getLogger(__name__)

# KEYS[1]: one key's bucket (a hash). ARGV: requests per minute, tokens per minute (0: unlimited),
# the tokens this request costs. Returns {taken (1/0), requests left, tokens left}; the levels as
# strings, since Redis would truncate Lua numbers to integers.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rpm, tpm, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local saved = redis.call('HMGET', KEYS[1], 'requests', 'tokens', 'at')
local elapsed = saved[3] and math.max(0, now - tonumber(saved[3])) or 0
local function level(value, limit)
  if not value then return limit end
  return math.min(limit, tonumber(value) + elapsed * limit / 60)
end
local requests, tokens = level(saved[1], rpm), level(saved[2], tpm)
local taken = (rpm == 0 or requests >= 1) and (tpm == 0 or tokens >= cost)
if taken then
  if rpm > 0 then requests = requests - 1 end
  if tpm > 0 then tokens = tokens - cost end
end
redis.call('HSET', KEYS[1], 'requests', requests, 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], 60)
return {taken and 1 or 0, tostring(requests), tostring(tokens)}
"""


class RedisBuckets:
    def __init__(
        self,
        url: str,
        *,
        fallback: Buckets,
        on_fallback: Callable[[], None],
        prefix: str = "railguard:ratelimit:",
        timeout_s: float = 0.5,
        pause_s: float = 2.0,
    ) -> None:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # one retry: a pooled connection that Redis closed (a restart) is replaced at once
        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 1)
        )
        self._script = self._client.register_script(_TAKE)
        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError)
        self._fallback = fallback
        self._on_fallback = on_fallback
        self._prefix = prefix
        self._pause_s = pause_s
        self._paused_until: float | None = None  # set while Redis is failing

    async def take(self, bucket: str, budget: Budget, tokens: int) -> Levels:
        if self._paused_until is None or time.monotonic() >= self._paused_until:
            try:
                taken, requests, left = await self._script(
                    keys=[self._prefix + bucket],
                    args=[budget.requests_per_minute or 0, budget.tokens_per_minute or 0, tokens],
                )
            except self._errors as exc:
                if self._paused_until is None:
                    log.warning("rate limits decided in process while Redis fails: %r", exc)
                self._paused_until = time.monotonic() + self._pause_s
            else:
                if self._paused_until is not None:
                    log.info("rate limits shared through Redis again")
                    self._paused_until = None
                return Levels(
                    bool(taken),
                    float(requests) if budget.requests_per_minute else math.inf,
                    float(left) if budget.tokens_per_minute else math.inf,
                )
        self._on_fallback()
        return await self._fallback.take(bucket, budget, tokens)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._fallback.aclose()
