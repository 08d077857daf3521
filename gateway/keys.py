"""The keys file that `railguard keys create|list|revoke` writes and the gateway reads.

A JSON file (`keys_file`, default `<cache_dir>/keys.json`, mode 0600) that holds no secret: each entry is
the sha256 of a key, its tenant, its holder's name if given, its role and when it was made. A key is
shown once, by `create`, and never stored. Writers take a lock beside the file and replace it atomically,
so a reader (the gateway, which reloads the file whenever it changes: `KeyFileWatcher`) sees the old file
or the new one, whole.

    {"version": 1, "keys": [
        {"sha256": "…", "tenant": "acme", "role": "user", "created": "…Z"},
        {"sha256": "…", "tenant": "ops", "name": "ann", "role": "reviewer", "created": "…Z"}]}

Roles, each allowed what the one before is: `user` calls the API; `reviewer` labels the review queue,
`adjudicator` also decides its disagreements, `admin` also imports, exports and changes reviewers' roles
(`gateway.review.auth`; a reviewer is named by the key's name, else its tenant).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "KeyFileError",
    "KeyFileWatcher",
    "Role",
    "StoredKey",
    "create_key",
    "read_keys",
    "revoke_key",
]

log = logging.getLogger(__name__)

Role = Literal["user", "reviewer", "adjudicator", "admin"]  # in increasing order
ROLES: tuple[str, ...] = get_args(Role)
KEY_PREFIX = "sk-rg-"
MIN_PREFIX = 4  # hex digits a revoke must name, so that a slip cannot match every key
_TENANT = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class KeyFileError(ValueError):
    """Bad input or an unreadable keys file: one line for the user, nothing changed."""


class StoredKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tenant: str = Field(pattern=_TENANT)
    name: str | None = Field(None, pattern=_TENANT)  # who holds it: a reviewer's name
    role: Role = "user"
    created: str


class _KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    keys: list[StoredKey] = Field(default_factory=list)


def read_keys(path: Path) -> list[StoredKey]:
    """The keys in the file; none when it does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyFileError(f"cannot read the keys file {path}: {exc.strerror}") from None
    try:
        return _KeyFile.model_validate(orjson.loads(raw)).keys
    except (orjson.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise KeyFileError(f"the keys file {path} is not valid: {first}") from None


def create_key(path: Path, tenant: str, role: str = "user", name: str | None = None) -> tuple[str, StoredKey]:
    """A new random key for `tenant` (held by `name`): (the key, to be shown once; what the file now
    holds)."""
    if role not in ROLES:
        raise KeyFileError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        entry = StoredKey(
            sha256=hashlib.sha256(key.encode()).hexdigest(),
            tenant=tenant,
            name=name,
            role=role,  # checked against ROLES above
            created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
    except ValidationError as exc:
        what, value = ("name", name) if exc.errors()[0]["loc"] == ("name",) else ("tenant name", tenant)
        raise KeyFileError(
            f"bad {what} {value!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ) from None
    with _locked(path):
        _write(path, [*read_keys(path), entry])
    return key, entry


def revoke_key(path: Path, prefix: str) -> StoredKey:
    """Remove the one key whose digest starts with `prefix`; the gateway refuses it from then on."""
    prefix = prefix.strip().lower()
    if len(prefix) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in prefix):
        raise KeyFileError(
            f"bad digest prefix {prefix!r}: give at least {MIN_PREFIX} hex digits of the sha256 "
            "(`railguard keys list` shows them)"
        )
    with _locked(path):
        keys = read_keys(path)
        matches = [k for k in keys if k.sha256.startswith(prefix)]
        if not matches:
            raise KeyFileError(f"no key's digest starts with {prefix!r} in {path}")
        if len(matches) > 1:
            raise KeyFileError(
                f"{len(matches)} keys' digests start with {prefix!r}: give more digits (nothing revoked)"
            )
        _write(path, [k for k in keys if k is not matches[0]])
    return matches[0]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time: two `keys create` at once must not lose a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(path: Path, keys: list[StoredKey]) -> None:
    # no "name": null for unnamed keys: the file stays as an older gateway reads it
    body = orjson.dumps(_KeyFile(keys=keys).model_dump(exclude_none=True), option=orjson.OPT_INDENT_2) + b"\n"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class KeyFileWatcher:
    """The keys file as the gateway sees it: read again whenever it changed (one `stat` per call), so a
    revoked key is refused from the next request on, without a restart. A file that becomes unreadable
    keeps the keys last read, and says so in the log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._seen = self._stat()
        # at start an unreadable file is an error (KeyFileError), later a line in the log
        self._keys = _by_digest(read_keys(path)) if self._seen else {}

    def changed(self) -> bool:
        """Whether the file changed since the last call; reads it when it did. Never raises."""
        seen = self._stat()
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            self._keys = _by_digest(read_keys(self.path)) if seen else {}
        except KeyFileError as exc:
            log.error("%s; keeping the %d keys read before", exc, len(self._keys))
            return False
        return True

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None  # no file, or removed: no keys from it
        except OSError:
            return self._seen  # unreadable for now: as it was
        return st.st_mtime_ns, st.st_size, st.st_ino

    @property
    def keys(self) -> Mapping[str, StoredKey]:
        return self._keys

    @property
    def exists(self) -> bool:
        return self._seen is not None


def _by_digest(keys: list[StoredKey]) -> dict[str, StoredKey]:
    return {k.sha256: k for k in keys}
