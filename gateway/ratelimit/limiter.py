"""Rate limits per API key, as OpenAI applies them: requests and tokens per minute.

`RateLimiter.check(identity, tokens)` takes from the key's bucket and returns OpenAI's headers for the
response (`x-ratelimit-limit-requests`, `-remaining-`, `-reset-`, and the `-tokens` variants), or raises
a 429 that carries them with `Retry-After`. Keys whose tenant sets no limit are unlimited and get no
headers. A request's tokens are estimated before the model runs, as OpenAI does: about four characters
per token of the prompt, plus the completion tokens it may ask for (`max_completion_tokens` or
`max_tokens`, times `n`), reserved up front and not refunded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.auth import Identity
from gateway.errors import RateLimitError, TokenRateLimitError
from gateway.ratelimit.buckets import Buckets, Budget, Levels
from gateway.settings import Settings

__all__ = ["RateLimiter", "chat_tokens", "duration", "moderation_tokens"]

CHARS_PER_TOKEN = 4


class RateLimiter:
    def __init__(self, settings: Settings, buckets: Buckets) -> None:
        self._buckets = buckets
        self._budgets = {
            name: Budget(t.requests_per_minute, t.tokens_per_minute)
            for name, t in settings.tenants.items()
            if t.requests_per_minute is not None or t.tokens_per_minute is not None
        }

    @property
    def enabled(self) -> bool:
        return bool(self._budgets)

    async def check(self, identity: Identity, tokens: int) -> dict[str, str]:
        """Spend one request and `tokens` of the caller's budget: the response's headers, or a 429."""
        budget = self._budgets.get(identity.tenant)
        if budget is None:
            return {}
        bucket = identity.key_sha256 or f"tenant:{identity.tenant}"  # auth off: the tenant's budget
        levels = await self._buckets.take(bucket, budget, tokens)
        headers = _headers(budget, levels)
        if not levels.taken:
            raise _refusal(budget, levels, tokens, headers)
        return headers

    async def aclose(self) -> None:
        await self._buckets.aclose()


def _dimensions(budget: Budget, levels: Levels) -> Iterable[tuple[str, int, float]]:
    if budget.requests_per_minute is not None:
        yield "requests", budget.requests_per_minute, levels.requests
    if budget.tokens_per_minute is not None:
        yield "tokens", budget.tokens_per_minute, levels.tokens


def _headers(budget: Budget, levels: Levels) -> dict[str, str]:
    headers = {}
    for name, limit, level in _dimensions(budget, levels):
        headers[f"x-ratelimit-limit-{name}"] = str(limit)
        headers[f"x-ratelimit-remaining-{name}"] = str(max(0, math.floor(level)))
        headers[f"x-ratelimit-reset-{name}"] = duration((limit - level) * 60 / limit)  # until full
    return headers


_NAMES = {"requests": "requests per min (RPM)", "tokens": "tokens per min (TPM)"}


def _refusal(budget: Budget, levels: Levels, tokens: int, headers: dict[str, str]) -> RateLimitError:
    limit = budget.tokens_per_minute
    if limit is not None and tokens > limit:  # would never fit: waiting does not help, so no Retry-After
        return TokenRateLimitError(
            f"Request too large for this API key on {_NAMES['tokens']}: Limit {limit}, Requested "
            f"{tokens}. Send a shorter prompt or ask for fewer completion tokens (max_tokens).",
            headers=headers,
        )
    costs = {"requests": 1, "tokens": tokens}
    short = [(n, lim, lvl) for n, lim, lvl in _dimensions(budget, levels) if lvl < costs[n]]
    name, limit, level = short[0]
    wait = max((costs[n] - lvl) * 60 / lim for n, lim, lvl in short)
    error = RateLimitError if name == "requests" else TokenRateLimitError
    return error(
        f"Rate limit reached for this API key on {_NAMES[name]}: Limit {limit}, Remaining "
        f"{max(0, math.floor(level))}, Requested {costs[name]}. Please try again in {duration(wait)}.",
        headers={
            **headers,
            "retry-after": str(max(1, math.ceil(wait))),
            "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
        },
    )


def duration(seconds: float) -> str:
    """As OpenAI writes its reset headers: "20ms", "1s", "6m0s", "1m2.5s"."""
    ms = max(0, math.ceil(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    text = f"{ms / 1000:g}s"
    return f"{minutes}m{text}" if minutes else text


def chat_tokens(body: Mapping[str, Any], reserved: int) -> int:
    """A chat request's cost: its prompt's estimate plus the completion tokens it may take (`reserved`
    when it sets no limit). Reads the raw body, so that invalid requests are counted too."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    chars = sum(_chars(m.get("content")) for m in messages if isinstance(m, dict))
    limit = next((body[k] for k in ("max_completion_tokens", "max_tokens") if _count(body.get(k))), reserved)
    n = body["n"] if _count(body.get("n")) else 1
    return math.ceil(chars / CHARS_PER_TOKEN) + int(limit) * int(n)


def moderation_tokens(body: Mapping[str, Any]) -> int:
    value = body.get("input")
    items = value if isinstance(value, list) else [value]
    return math.ceil(sum(_chars(i if isinstance(i, str) else [i]) for i in items) / CHARS_PER_TOKEN)


def _chars(content: Any) -> int:
    """Characters of a message's content: a string, or the text of its parts."""
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return 0
    return sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
