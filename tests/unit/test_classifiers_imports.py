"""What the classifiers import: the serving modules (``classifiers/*.py`` and ``canonical/``) no torch
and nothing of ``classifiers.training`` or ``classifiers.evaluation``; the package nothing of the rest
of the project; and no module of it over 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import classifiers

PACKAGE = Path(classifiers.__file__).parent
# the serving path: what the gateway imports (export/ is reached only to build, training/ and
# evaluation/ never)
SERVING = sorted([*PACKAGE.glob("*.py"), *(PACKAGE / "canonical").glob("*.py")])


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, lazy imports inside functions too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_serving_imports_load_no_torch_and_no_gateway() -> None:
    modules = ", ".join(_module(p) for p in SERVING)
    code = (
        f"import sys, {modules}, classifiers.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('torch', 'transformers', 'onnx', 'gateway', 'sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_serving_modules_import_no_training_and_no_evaluation() -> None:
    assert PACKAGE / "runtime.py" in SERVING
    for path in SERVING:
        below = {
            m for m in _imports(path) if m.startswith(("classifiers.training", "classifiers.evaluation"))
        }
        assert below == set(), f"{path.relative_to(PACKAGE.parent)} imports {sorted(below)}"


def test_the_runtime_builds_nothing_itself() -> None:
    """Opening artefacts is the runtime's; building them is classifiers.export's, reached through
    ``ensure_built`` alone (``SafetyClassifier.load``)."""
    exported = {m for p in SERVING for m in _imports(p) if m.startswith("classifiers.export")}
    assert exported <= {"classifiers.export", "classifiers.export.build", "classifiers.export.ensure_built"}


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_classifiers_never_imports_the_rest_of_the_project() -> None:
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"gateway", "steering", "trainer"}, (path, name)


def test_shipped_parts_are_small() -> None:
    shipped = [p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert (PACKAGE / "artifacts" / "e5-small" / "heads.npz") in shipped
    assert max(p.stat().st_size for p in shipped) < 5_000_000
    assert sum(p.stat().st_size for p in shipped) < 10_000_000
