"""`railguard steer` with railguard's refusal detector: the steering CLI imports nothing of the
project, so the commands that count refusals (`extract`, `eval`) get the detector from here."""

from __future__ import annotations

from collections.abc import Sequence

from classifiers.refusals import is_refusal
from steering.cli import main as steering_main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    return steering_main(argv, is_refusal=is_refusal)


if __name__ == "__main__":
    raise SystemExit(main())
