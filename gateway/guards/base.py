"""The guard seam: a guard reads a text and reports findings (`gateway.policy.verdict.Finding`), which
the policy turns into a verdict."""

from __future__ import annotations

from typing import Protocol

from gateway.policy.verdict import Finding, Stage

__all__ = ["Guard"]


class Guard(Protocol):
    """Looks at text and reports findings. `blocking` guards run in a worker thread."""

    name: str
    blocking: bool

    def check(self, text: str, stage: Stage, language: str) -> tuple[Finding, ...]: ...
