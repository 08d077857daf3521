"""Reviewers: who presents which key, with which role; and the review page's signed session cookie.

Reviewers come from the settings (`review.reviewers`) and from the keys file (`railguard keys create
--role reviewer|adjudicator|admin [--name ann]`), read again whenever it changes: a key made there works
from the next request on, a revoked one is refused. A keys-file reviewer is named by the key's name, else
its tenant; a name's role is that of its first key (the settings' before the file's). A keys-file key
with the `user` role is known but no reviewer's: 403, where an unknown key gets 401.

Keys are compared as sha256 digests in constant time; only digests need be configured. The cookie is
``name.expiry.signature`` where the signature is an HMAC keyed with the reviewer's key digest: any replica
with the same configuration accepts it, and removing (or rotating) the reviewer's key ends the session.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import AuthenticationError, RailguardError
from gateway.keys import KeyFileWatcher
from gateway.review.store import ROLES, ReviewStore, Role
from gateway.settings import ReviewerConfig

COOKIE = "railguard_review"
SESSION_S = 12 * 3600


class PermissionDeniedError(RailguardError):
    status = 403
    type = "invalid_request_error"
    default_code = "permission_denied"


@dataclass(frozen=True)
class _Key:
    """A key the review routes know: whose it is and its role (None: a user's key, no reviewer's)."""

    name: str
    digest: str
    role: Role | None


class Reviewers:
    def __init__(
        self, reviewers: Mapping[str, ReviewerConfig], store: ReviewStore, keys_file: Path | None = None
    ) -> None:
        self._configured = [_Key(name, r.key_hash, r.role) for name, r in reviewers.items()]
        self._file = KeyFileWatcher(keys_file) if keys_file is not None else None
        self._keys = self._merged()
        self._store = store

    def _merged(self) -> list[_Key]:
        """The settings' reviewers, then the keys file's keys (a digest the settings give is theirs)."""
        taken = {k.digest for k in self._configured}
        from_file = [] if self._file is None else self._file.keys.values()
        return self._configured + [
            _Key(k.name or k.tenant, k.sha256, None if k.role == "user" else k.role)
            for k in from_file
            if k.sha256 not in taken
        ]

    def _current(self) -> list[_Key]:
        if self._file is not None and self._file.changed():
            self._keys = self._merged()
        return self._keys

    def _reviewer_keys(self, name: str) -> list[_Key]:
        return [k for k in self._current() if k.name == name and k.role is not None]

    def names(self) -> list[str]:
        return sorted({k.name for k in self._current() if k.role is not None})

    def role(self, name: str) -> Role:
        keys = self._reviewer_keys(name)
        base: Role = keys[0].role if keys and keys[0].role else "reviewer"
        return self._store.role_overrides().get(name, base)

    def _by_digest(self, key: str) -> _Key | None:
        digest = hashlib.sha256(key.encode()).hexdigest()
        found = None
        for known in self._current():  # every digest compared: no early exit to time
            if hmac.compare_digest(digest, known.digest):
                found = known
        return found

    def by_key(self, key: str) -> str | None:
        """The reviewer whose key this is; None for an unknown key or a user's."""
        found = self._by_digest(key)
        return found.name if found is not None and found.role is not None else None

    def cookie(self, name: str, now: float | None = None) -> str:
        expiry = int((now or time.time()) + SESSION_S)
        return f"{name}.{expiry}.{self._sign(self._reviewer_keys(name)[0].digest, name, expiry)}"

    def by_cookie(self, value: str) -> str | None:
        name, _, rest = value.rpartition(".")
        name, _, expiry = name.rpartition(".")
        keys = self._reviewer_keys(name)
        if not keys or not expiry.isdigit() or int(expiry) < time.time():
            return None
        valid = [hmac.compare_digest(rest, self._sign(k.digest, name, int(expiry))) for k in keys]
        return name if any(valid) else None

    @staticmethod
    def _sign(digest: str, name: str, expiry: int) -> str:
        return hmac.new(digest.encode(), f"{name}.{expiry}".encode(), hashlib.sha256).hexdigest()

    def require(self, headers: Mapping[str, str], cookies: Mapping[str, str], role: Role = "reviewer") -> str:
        """The reviewer making the request, with at least ``role``: 401 without a valid key or session,
        403 with too small a role (a user's key from the keys file included)."""
        scheme, _, key = headers.get("authorization", "").partition(" ")
        name = None
        if scheme.lower() == "bearer" and key.strip():
            found = self._by_digest(key.strip())
            if found is not None and found.role is None:
                raise PermissionDeniedError(
                    f"This needs the {role} role; the key of {found.name} is a user's."
                )
            name = found.name if found is not None else None
        elif COOKIE in cookies:
            name = self.by_cookie(cookies[COOKIE])
        if name is None:
            raise AuthenticationError("A reviewer's API key is required (Authorization: Bearer KEY).")
        if ROLES.index(self.role(name)) < ROLES.index(role):
            raise PermissionDeniedError(f"This needs the {role} role; {name} is a {self.role(name)}.")
        return name
