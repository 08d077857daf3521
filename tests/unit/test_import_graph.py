"""Which package may import which: the layers, read from the sources (every import, lazy ones too).

railguard/cli.py is the composition root and alone imports every package; the gateway reads trained
adapters as files and imports nothing of the trainer or the evaluation. Inside the gateway, its
subpackages (chat, guards, policy, backends, ...) import each other without a cycle: the policy knows
nothing of the guards that feed it, the backends nothing of the chat service that calls them."""

from __future__ import annotations

import ast
from itertools import pairwise
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


def _imports(path: Path) -> list[str]:
    """Every module `path` imports by absolute name, ``from x import y`` as both ``x`` and ``x.y``."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def imported_packages(package: str) -> dict[str, set[str]]:
    """{other package: the files of `package` that import it}."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
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


GATEWAY = ROOT / "gateway"
SUBPACKAGES = sorted(p.name for p in GATEWAY.iterdir() if (p / "__init__.py").is_file())


def gateway_graph() -> dict[str, dict[str, set[str]]]:
    """{subpackage of gateway: {other subpackage it imports: the files that import it}}."""
    graph: dict[str, dict[str, set[str]]] = {name: {} for name in SUBPACKAGES}
    for name in SUBPACKAGES:
        for path in (GATEWAY / name).rglob("*.py"):
            for imported in _imports(path):
                parts = imported.split(".")
                if parts[0] == "gateway" and len(parts) > 1 and parts[1] in graph and parts[1] != name:
                    graph[name].setdefault(parts[1], set()).add(str(path.relative_to(ROOT)))
    return graph


def test_gateway_has_the_subpackages_this_test_reads() -> None:
    assert {"backends", "chat", "guards", "moderations", "policy", "review", "sinks", "telemetry"} <= set(
        SUBPACKAGES
    )


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> str | None:
    """A cycle of the graph, each edge with the files that make it, or None."""
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> str | None:
        if node in path:
            cycle = (*path[path.index(node) :], node)
            return "; ".join(f"{a} -> {b} ({', '.join(sorted(graph[a][b]))})" for a, b in pairwise(cycle))
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            found = visit(nxt, (*path, node))
            if found:
                return found
        done.add(node)
        return None

    return next((c for c in (visit(n, ()) for n in sorted(graph)) if c), None)


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"chat": {"guards": {"c.py"}}, "guards": {"policy": {"g.py"}}, "policy": {"guards": {"p.py"}}}
    assert find_cycle(graph) == "guards -> policy (g.py); policy -> guards (p.py)"
    assert find_cycle({"chat": {"guards": {"c.py"}}, "guards": {}}) is None


def test_gateway_subpackages_import_each_other_without_a_cycle() -> None:
    cycle = find_cycle(gateway_graph())
    assert cycle is None, f"import cycle in gateway: {cycle}"


def test_the_policy_knows_nothing_of_the_guards_nor_the_backends() -> None:
    graph = gateway_graph()
    assert not {"guards", "backends", "chat"} & set(graph["policy"]), graph["policy"]
    assert "chat" not in graph["backends"], graph["backends"]


def test_gateway_imports_nothing_of_the_trainer() -> None:
    assert "trainer" not in imported_packages("gateway"), imported_packages("gateway")["trainer"]
