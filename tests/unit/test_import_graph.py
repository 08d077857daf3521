"""Which package may import which: the layers, read from the sources (every import, lazy ones too).

railguard/cli.py is the composition root and alone imports every package; the gateway reads trained
adapters as files and imports nothing of the trainer or the evaluation."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "classifiers", "steering", "trainer", "evaluation", "railguard")
ALLOWED = {
    "classifiers": set(),
    "steering": set(),
    "gateway": {"classifiers", "steering"},
    "trainer": {"gateway", "classifiers", "steering", "evaluation"},  # the gate reuses the evaluation
    "evaluation": {"gateway", "classifiers", "steering"},
    "railguard": {"gateway", "classifiers", "steering", "trainer", "evaluation"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """{other package: the files of `package` that import it}."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_each_package_imports_only_the_layers_below_it() -> None:
    for package, allowed in ALLOWED.items():
        extra = {k: v for k, v in imported_packages(package).items() if k not in allowed}
        assert extra == {}, f"{package} imports {extra}"


def test_the_package_graph_has_no_cycle() -> None:
    graph = {p: set(imported_packages(p)) for p in PACKAGES}
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        visiting.add(node)
        for nxt in graph[node]:
            visit(nxt, (*path, node))
        visiting.discard(node)
        done.add(node)

    for package in PACKAGES:
        visit(package, ())
