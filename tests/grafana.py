"""The dashboards' generator (grafana/generate.py, a development-time script outside the packages),
loaded from its file for the tests that check the dashboards against the metrics."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

GRAFANA = Path(__file__).resolve().parents[1] / "grafana"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


generate = _load()
DASHBOARDS = generate.DASHBOARDS
build = generate.build
render = generate.render
