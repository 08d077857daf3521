"""API keys -> who calls (tenant, role), and the per-key limit on requests in flight.

Keys come from the settings (`tenants.*.api_key_sha256`, or plain `api_keys` hashed at start) and from
the keys file that `railguard keys` writes (`gateway.keys`), read again whenever it changes. Only
sha256 digests are kept; a key from the settings wins over the same digest in the file. Auth is on
when the settings list a key or the keys file exists, even empty: revoking the last key locks everyone
out rather than opening the gateway, and a running gateway never turns auth off.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from gateway.errors import AuthenticationError, RateLimitError
from gateway.keys import KeyFileWatcher, Role
from gateway.settings import Settings

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Identity:
    """Who a request comes from. `key_sha256` is empty when auth is off."""

    tenant: str
    key_sha256: str = ""
    role: Role = "user"  # keys from the settings are users'; the keys file says each key's role


class Authenticator:
    """Maps the bearer key to its tenant. With no keys configured, auth is off: one tenant, `default`."""

    def __init__(self, settings: Settings) -> None:
        # keyed by the key's sha256: plain keys are hashed at start, so no key is kept in memory
        # as text, and the lookup compares digests, not the secret
        configured = {_digest(key): name for name, t in settings.tenants.items() for key in t.api_keys}
        configured.update({d.lower(): name for name, t in settings.tenants.items() for d in t.api_key_sha256})
        self._configured = {d: Identity(tenant, d) for d, tenant in configured.items()}
        self._file = KeyFileWatcher(settings.keys_path)
        self._identities = self._merged()
        self._required = bool(self._configured) or self._file.exists
        token = settings.metrics_token
        self._metrics = _digest(token) if token else None

    def _merged(self) -> dict[str, Identity]:
        from_file = {d: Identity(k.tenant, d, k.role) for d, k in self._file.keys.items()}
        return from_file | self._configured

    def _current(self) -> dict[str, Identity]:
        if self._file.changed():
            self._identities = self._merged()
            self._required = self._required or self._file.exists
        return self._identities

    @property
    def enabled(self) -> bool:
        self._current()
        return self._required

    def tenants(self) -> list[str]:
        """The tenants that have keys now (for metric labels)."""
        return sorted({i.tenant for i in self._current().values()})

    def identify(self, headers: Mapping[str, str]) -> Identity:
        """Who sends a request; raises 401 for a missing or unknown key."""
        identities = self._current()
        if not self._required:
            return Identity(DEFAULT_TENANT)
        authorization = headers.get("authorization", "")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationError(
                "You didn't provide an API key. Provide it in the Authorization header "
                "(Authorization: Bearer YOUR_KEY).",
                code="missing_api_key",
            )
        identity = identities.get(_digest(key))
        if identity is None:
            shown = key[:3] + "*" * max(0, len(key) - 7) + key[-4:] if len(key) > 8 else "***"
            raise AuthenticationError(f"Incorrect API key provided: {shown}.")
        return identity

    def check_metrics(self, headers: Mapping[str, str]) -> None:
        """With API keys configured, /metrics needs the scrape token (it names tenants and traffic)."""
        if not self.enabled:
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

    def acquire(self, identity: Identity) -> str:
        limit = self._per_tenant.get(identity.tenant, self._default)
        slot = identity.key_sha256 or identity.tenant
        current = self._in_flight.get(slot, 0)
        if current >= limit:
            raise RateLimitError(
                f"Too many requests in flight for this API key (limit {limit}). "
                "Retry after one of them has finished.",
                headers={"retry-after": "1"},
            )
        self._in_flight[slot] = current + 1
        return slot

    def slot(self, identity: Identity) -> Slot:
        """``async with limiter.slot(identity):`` one request in flight for the block (a 429 on entry
        past the limit), or until the end of a stream the block hands it to (`Slot.release_after`)."""
        return Slot(self, identity)

    def release(self, slot: str) -> None:
        remaining = self._in_flight.get(slot, 1) - 1
        if remaining > 0:
            self._in_flight[slot] = remaining
        else:
            self._in_flight.pop(slot, None)

    def in_flight(self) -> int:
        """Requests in flight over all keys (the drain waits for none)."""
        return sum(self._in_flight.values())


class Slot:
    """One request's place among its key's requests in flight."""

    def __init__(self, limiter: ConcurrencyLimiter, identity: Identity) -> None:
        self._limiter = limiter
        self._identity = identity
        self._key: str | None = None
        self._handed_on = False

    async def __aenter__(self) -> Slot:
        self._key = self._limiter.acquire(self._identity)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._handed_on:
            self._release()

    def release_after(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``stream``, holding the slot past the block until it ends (or is closed)."""
        self._handed_on = True
        return self._holding(stream)

    async def _holding(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for data in stream:
                yield data
        finally:
            try:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:  # closed with the wrapper, not left to the garbage collector
                    await aclose()
            finally:
                self._release()

    def _release(self) -> None:
        if self._key is not None:
            self._limiter.release(self._key)
            self._key = None
