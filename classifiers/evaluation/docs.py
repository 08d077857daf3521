"""The evaluation's table in ``docs/classifiers.md``: written between two markers by the command that
measured it, with the command and the time, so the figures a reader sees are the ones it re-runs."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["BEGIN", "END", "write_section"]

BEGIN = "<!-- EVAL:BEGIN (written by `railguard classifiers eval --docs`) -->"
END = "<!-- EVAL:END -->"


def write_section(path: Path, body: str) -> None:
    """Replace what lies between the markers; a file without both markers is a ValueError, untouched."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), flags=re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {BEGIN} ... {END} section to write")
    path.write_text(pattern.sub(lambda _: f"{BEGIN}\n{body.strip()}\n{END}", text, count=1), encoding="utf-8")
