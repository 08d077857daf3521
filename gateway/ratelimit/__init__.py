"""Rate limits per API key (requests and tokens per minute) with OpenAI's `x-ratelimit-*` headers.

RateLimiter             the service the routes call: budgets from the settings, headers, 429s
Buckets                 the seam: where the buckets live
├── LocalBuckets        this process (the default)
└── RedisBuckets        one Redis for every replica (`redis_url`), LocalBuckets while it fails
"""

from gateway.ratelimit.buckets import Buckets, Budget, Levels, LocalBuckets
from gateway.ratelimit.limiter import RateLimiter, chat_tokens, duration, moderation_tokens

__all__ = [
    "Buckets",
    "Budget",
    "Levels",
    "LocalBuckets",
    "RateLimiter",
    "chat_tokens",
    "duration",
    "moderation_tokens",
]
