"""The registry's serving pointer as the local backend reads it: `<registry>/serving/<model>.json`,
written atomically by `railguard registry promote|rollback`, naming the adapter directory to serve."""

from __future__ import annotations

import json
from pathlib import Path


def stamp(path: Path) -> tuple[float, int] | None:
    """What tells a changed pointer from the one already read: its mtime and size."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def read_pointer(path: Path, model: str) -> Path | None:
    """The adapter directory the registry promoted for ``model``, or None when nothing is promoted.
    A pointer that cannot be read is an error (the caller keeps what it serves)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("model") != model or not isinstance(data.get("adapter"), str):
        raise ValueError(f"{path} does not name an adapter for {model}")
    return Path(data["adapter"])
