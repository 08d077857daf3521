"""Reviewers: who presents which key, with which role; and the review page's signed session cookie.

Keys are compared as sha256 digests in constant time; only digests need be configured. The cookie is
``name.expiry.signature`` where the signature is an HMAC keyed with the reviewer's key digest: any replica
with the same configuration accepts it, and removing (or rotating) the reviewer's key ends the session.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from gateway.errors import AuthenticationError, RailguardError
from gateway.review.store import ROLES, ReviewStore, Role
from gateway.settings import ReviewerConfig

COOKIE = "railguard_review"
SESSION_S = 12 * 3600


class PermissionDeniedError(RailguardError):
    status = 403
    type = "invalid_request_error"
    default_code = "permission_denied"


class Reviewers:
    def __init__(self, reviewers: Mapping[str, ReviewerConfig], store: ReviewStore) -> None:
        self._hashes = {name: r.key_hash for name, r in reviewers.items()}
        self._roles: dict[str, Role] = {name: r.role for name, r in reviewers.items()}
        self._store = store

    def names(self) -> list[str]:
        return sorted(self._hashes)

    def role(self, name: str) -> Role:
        return self._store.role_overrides().get(name, self._roles[name])

    def by_key(self, key: str) -> str | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        found = None
        for name, known in self._hashes.items():  # every digest compared: no early exit to time
            if hmac.compare_digest(digest, known):
                found = name
        return found

    def cookie(self, name: str, now: float | None = None) -> str:
        expiry = int((now or time.time()) + SESSION_S)
        return f"{name}.{expiry}.{self._sign(name, expiry)}"

    def by_cookie(self, value: str) -> str | None:
        name, _, rest = value.rpartition(".")
        name, _, expiry = name.rpartition(".")
        if name not in self._hashes or not expiry.isdigit() or int(expiry) < time.time():
            return None
        return name if hmac.compare_digest(rest, self._sign(name, int(expiry))) else None

    def _sign(self, name: str, expiry: int) -> str:
        return hmac.new(self._hashes[name].encode(), f"{name}.{expiry}".encode(), hashlib.sha256).hexdigest()

    def require(self, headers: Mapping[str, str], cookies: Mapping[str, str], role: Role = "reviewer") -> str:
        """The reviewer making the request, with at least ``role``: 401 without a valid key or session,
        403 with too small a role."""
        scheme, _, key = headers.get("authorization", "").partition(" ")
        name = None
        if scheme.lower() == "bearer" and key.strip():
            name = self.by_key(key.strip())
        elif COOKIE in cookies:
            name = self.by_cookie(cookies[COOKIE])
        if name is None:
            raise AuthenticationError("A reviewer's API key is required (Authorization: Bearer KEY).")
        if ROLES.index(self.role(name)) < ROLES.index(role):
            raise PermissionDeniedError(f"This needs the {role} role; {name} is a {self.role(name)}.")
        return name
