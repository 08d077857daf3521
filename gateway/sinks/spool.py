"""An append-only local file of JSON lines: where records wait while their store is unreachable.

Created 0600 (the records hold conversations). Appends are whole lines written with one call under a
lock, so the request path (a full queue) and the writer thread can both append; a line cut short by a
crash is skipped on reading, not fatal.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

PRIVATE = 0o600


def create_private(path: Path) -> None:
    """Create ``path`` readable by its owner only, if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE))


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, items: list[Any], *, sync: bool = True) -> None:
        """Add ``items`` at the end; ``sync=False`` leaves the flush to disk to the OS (the request
        path: a process crash loses nothing written, only a machine crash could)."""
        data = b"".join(orjson.dumps(item) + b"\n" for item in items)
        with self._lock:
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, PRIVATE)
            try:
                os.write(fd, data)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def pending(self) -> bool:
        try:
            return self.path.is_file() and self.path.stat().st_size > 0
        except OSError:
            return False

    def read(self) -> tuple[list[Any], int]:
        """Everything spooled, oldest first, and how many lines that took (for :meth:`remove`)."""
        with self._lock:
            try:
                lines = [x for x in self.path.read_bytes().splitlines() if x.strip()]
            except FileNotFoundError:
                return [], 0
        items = []
        for number, line in enumerate(lines, 1):
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                log.error("skipping broken line %d of spool %s (a crash mid-write)", number, self.path)
        return items, len(lines)

    def remove(self, count: int) -> None:
        """Drop the first ``count`` items, keep what was appended since (replay and appends interleave)."""
        with self._lock:
            try:
                lines = [x for x in self.path.read_bytes().splitlines(keepends=True) if x.strip()]
            except FileNotFoundError:
                return
            rest = lines[count:]
            if not rest:
                self.path.unlink()
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, PRIVATE)
            try:
                os.write(fd, b"".join(rest))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
