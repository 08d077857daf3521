"""The adapter registry: every trained adapter version with its lineage, and which one each model serves.

A version is an adapter directory copied into the registry under its content address
(``<name>@<first 12 hex of the sha256 of its weights>``) with what made it: parent version, datasets
(their manifests' digests), training config, code version, evaluation report, the gate's decision.
State lives in ``<registry>/registry.sqlite3``; what a model serves is one small JSON file per model,
``<registry>/serving/<model>.json``, written atomically: the gateway watches it and swaps the adapter in
without a restart (``gateway/backends/local/backend.py``), so promotion and rollback are one command each
and every gateway replica sharing the directory follows. Every promotion, rejection and rollback is an
event with who, when and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.local.loader import check_adapter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    parent TEXT,
    path TEXT NOT NULL,
    lineage TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'candidate'
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    model TEXT,
    version TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""


class RegistryError(ValueError):
    """An unknown version, a corrupt adapter, nothing to roll back to: the message says which."""


@dataclass(frozen=True)
class Version:
    version: str
    name: str
    created: float
    parent: str | None
    path: Path
    lineage: dict[str, Any]
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version, "name": self.name, "created": self.created, "parent": self.parent,
            "path": str(self.path), "status": self.status, "lineage": self.lineage,
        }  # fmt: skip


def weights_digest(adapter: Path) -> str:
    return hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "adapters").mkdir(parents=True, exist_ok=True)
        (root / "serving").mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.root / "registry.sqlite3", timeout=30)) as db, db:
            yield db

    def register(self, adapter: Path, *, name: str, parent: str | None = None, **lineage: Any) -> Version:
        """Copy ``adapter`` in (checked whole first) as a candidate; registering it again is a no-op."""
        try:
            check_adapter(adapter)
        except (FileNotFoundError, ValueError) as exc:
            raise RegistryError(str(exc)) from None
        if parent is not None:
            self.get(parent)
        version = f"{name}@{weights_digest(adapter)[:12]}"
        target = self.root / "adapters" / version
        if not target.exists():
            staging = target.with_name(target.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(adapter, staging)
            os.replace(staging, target)
        with self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO versions (version, name, created, parent, path, lineage)"
                " VALUES (?,?,?,?,?,?)",
                (
                    version,
                    name,
                    time.time(),
                    parent,
                    str(target),
                    json.dumps(lineage, sort_keys=True, default=str),
                ),
            )
        return self.get(version)

    def get(self, version: str) -> Version:
        with self._db() as db:
            row = db.execute(
                "SELECT version, name, created, parent, path, lineage, status FROM versions"
                " WHERE version = ?",
                (version,),
            ).fetchone()
        if row is None:
            raise RegistryError(f"no version {version!r} in {self.root} (railguard registry list)")
        return Version(row[0], row[1], row[2], row[3], Path(row[4]), json.loads(row[5]), row[6])

    def versions(self) -> list[Version]:
        with self._db() as db:
            ids = [v for (v,) in db.execute("SELECT version FROM versions ORDER BY created")]
        return [self.get(v) for v in ids]

    def serving(self, model: str) -> str | None:
        pointer = self.root / "serving" / f"{model}.json"
        if not pointer.is_file():
            return None
        return str(json.loads(pointer.read_text(encoding="utf-8"))["version"])

    def promote(self, version: str, *, model: str, actor: str, reason: str) -> Version:
        """Serve ``version`` as ``model``: its files are checked again (a corrupt copy is refused and
        nothing changes), then the pointer is replaced atomically."""
        found = self.get(version)
        try:
            check_adapter(found.path)
        except (FileNotFoundError, ValueError) as exc:
            raise RegistryError(f"{version} cannot be promoted: {exc}") from None
        self._point(model, found, actor)
        with self._db() as db:
            db.execute("UPDATE versions SET status = 'promoted' WHERE version = ?", (version,))
            self._event(db, model, version, "promoted", actor, reason)
        return self.get(version)

    def annotate(self, version: str, **lineage: Any) -> Version:
        """Add to a version's lineage what is known only after it was registered (its evaluation)."""
        found = self.get(version)
        merged = {**found.lineage, **lineage}
        with self._db() as db:
            db.execute(
                "UPDATE versions SET lineage = ? WHERE version = ?",
                (json.dumps(merged, sort_keys=True, default=str), version),
            )
        return self.get(version)

    def reject(self, version: str, *, actor: str, reason: str) -> None:
        self.get(version)
        with self._db() as db:
            db.execute("UPDATE versions SET status = 'rejected' WHERE version = ?", (version,))
            self._event(db, None, version, "rejected", actor, reason)

    def rollback(self, *, model: str, actor: str, reason: str) -> Version:
        """Serve again what ``model`` served before its current version."""
        with self._db() as db:
            rows = db.execute(
                "SELECT version FROM events WHERE model = ? AND event = 'promoted' ORDER BY id", (model,)
            )
            promoted = [v for (v,) in rows]
        current = self.serving(model)
        order = list(dict.fromkeys(reversed(promoted)))[::-1]  # each once, by its last promotion
        earlier = [v for v in order if v != current and self.get(v).status != "rolled back"]
        if not earlier:
            raise RegistryError(f"{model} has no earlier version to roll back to")
        previous = self.get(earlier[-1])
        self._point(model, previous, actor)
        with self._db() as db:
            if current is not None:
                db.execute("UPDATE versions SET status = 'rolled back' WHERE version = ?", (current,))
            self._event(db, model, previous.version, "rolled back to", actor, reason)
        return previous

    def events(self, version: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE version = ?", (version,)) if version else ("", ())
        with self._db() as db:
            rows = db.execute(
                f"SELECT at, model, version, event, actor, reason FROM events {where} ORDER BY id", args
            )
            return [
                dict(zip(("at", "model", "version", "event", "actor", "reason"), r, strict=True))
                for r in rows
            ]

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """What differs in the lineage of two versions (config, datasets, evaluation...)."""
        left, right = self.get(a).lineage, self.get(b).lineage
        return {k: {"a": left.get(k), "b": right.get(k)} for k in sorted(set(left) | set(right))
                if left.get(k) != right.get(k)}  # fmt: skip

    def _point(self, model: str, version: Version, actor: str) -> None:
        pointer = self.root / "serving" / f"{model}.json"
        tmp = pointer.with_name(pointer.name + ".tmp")
        body = {"model": model, "version": version.version, "adapter": str(version.path), "by": actor,
                "at": time.time()}  # fmt: skip
        tmp.write_text(json.dumps(body), encoding="utf-8")
        os.replace(tmp, pointer)

    @staticmethod
    def _event(
        db: sqlite3.Connection, model: str | None, version: str, event: str, actor: str, reason: str
    ) -> None:
        db.execute(
            "INSERT INTO events (at, model, version, event, actor, reason) VALUES (?,?,?,?,?,?)",
            (time.time(), model, version, event, actor, reason),
        )
