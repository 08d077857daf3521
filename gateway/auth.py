"""API keys -> tenants, and the per-key limit on requests in flight."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from gateway.errors import AuthenticationError, RateLimitError
from gateway.settings import Settings

DEFAULT_TENANT = "default"


class Authenticator:
    """Maps the bearer key to its tenant. With no keys configured, auth is off: one tenant, `default`."""

    def __init__(self, settings: Settings) -> None:
        # keyed by the key's sha256: plain keys are hashed at start, so no key is kept in memory
        # as text, and the lookup compares digests, not the secret
        self._tenants = {_digest(key): name for name, t in settings.tenants.items() for key in t.api_keys}
        self._tenants.update(
            {d.lower(): name for name, t in settings.tenants.items() for d in t.api_key_sha256}
        )
        token = settings.metrics_token
        self._metrics = _digest(token) if token else None

    @property
    def enabled(self) -> bool:
        return bool(self._tenants)

    def tenant(self, headers: Mapping[str, str]) -> tuple[str, str]:
        """(tenant, key) for a request; raises 401 for a missing or unknown key."""
        if not self._tenants:
            return DEFAULT_TENANT, ""
        authorization = headers.get("authorization", "")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationError(
                "You didn't provide an API key. Provide it in the Authorization header "
                "(Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        tenant = self._tenants.get(_digest(key))
        if tenant is None:
            shown = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"
            raise AuthenticationError(f"Incorrect API key provided: {shown}.")
        return tenant, key

    def check_metrics(self, headers: Mapping[str, str]) -> None:
        """With API keys configured, /metrics needs the scrape token (it names tenants and traffic)."""
        if not self._tenants:
            return
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if self._metrics is None:
            raise AuthenticationError(
                "API keys are configured, so /metrics needs a scrape token: set metrics_token "
                "(RAILGUARD_METRICS_TOKEN) and give it to Prometheus (authorization: credentials).",
                code="metrics_token_required",
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(_digest(token.strip()), self._metrics):
            raise AuthenticationError("A valid scrape token is required for /metrics.")


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ConcurrencyLimiter:
    """At most N requests in flight per API key; the N+1st gets a 429 at once rather than waiting."""

    def __init__(self, settings: Settings) -> None:
        self._default = settings.limits.max_concurrency
        self._per_tenant = {
            name: t.max_concurrency for name, t in settings.tenants.items() if t.max_concurrency
        }
        self._in_flight: dict[str, int] = {}

    def acquire(self, tenant: str, key: str) -> str:
        limit = self._per_tenant.get(tenant, self._default)
        slot = key or tenant
        current = self._in_flight.get(slot, 0)
        if current >= limit:
            raise RateLimitError(
                f"Too many requests in flight for this API key (limit {limit}). "
                "Retry after one of them has finished.",
                headers={"retry-after": "1"},
            )
        self._in_flight[slot] = current + 1
        return slot

    def release(self, slot: str) -> None:
        remaining = self._in_flight.get(slot, 1) - 1
        if remaining > 0:
            self._in_flight[slot] = remaining
        else:
            self._in_flight.pop(slot, None)

    def in_flight(self) -> int:
        """Requests in flight over all keys (the drain waits for none)."""
        return sum(self._in_flight.values())
