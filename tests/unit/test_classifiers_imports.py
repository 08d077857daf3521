from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import classifiers

PACKAGE = Path(classifiers.__file__).parent


def test_runtime_import_loads_no_torch_and_no_gateway() -> None:
    code = (
        "import sys, classifiers, classifiers.runtime, classifiers.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('torch', 'transformers', 'gateway', 'sklearn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


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
