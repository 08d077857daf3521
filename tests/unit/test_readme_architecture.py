"""README.md's "What a request goes through" names the modules a chat request passes through, in order:
each must exist, so that the picture cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"\b(?:gateway|classifiers|steering|trainer|evaluation)/[\w/]*(?:\.py\b|/)")


def section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## What a request goes through")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def named() -> list[str]:
    return PATH.findall(section())


def test_the_section_names_modules() -> None:
    assert len(set(named())) >= 20, named()


def test_every_module_the_picture_names_exists() -> None:
    missing = [p for p in dict.fromkeys(named()) if not (ROOT / p).exists()]
    assert missing == [], f"README names modules that do not exist: {missing}"


def test_the_picture_follows_a_request_in_order() -> None:
    order = [
        "gateway/chat/router.py",
        "gateway/auth.py",
        "gateway/requests.py",
        "gateway/chat/serving.py",
        "gateway/policy/engine.py",
        "gateway/guards/runner.py",
        "gateway/backends/models.py",
        "gateway/guards/output.py",
        "gateway/chat/recording.py",
        "gateway/sinks/",
    ]
    first = {p: named().index(p) for p in order}
    assert sorted(order, key=first.__getitem__) == order, first
