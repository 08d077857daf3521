from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from gateway.guards.base import Action
from gateway.records import DecisionRecord
from gateway.sinks.sqlite import SQLiteSink, read_records


def _record(i: int, action: Action) -> DecisionRecord:
    return DecisionRecord(f"r{i}", time.time() + i, "t", "m", "upstream", "v1", "en", False, action, 200)


def test_sink_keeps_flagged_records_and_close_drains_the_queue(tmp_path: Path) -> None:
    sink = SQLiteSink(tmp_path / "db.sqlite3")
    for i in range(500):
        sink.submit(_record(i, Action.REFUSE if i % 2 else Action.ALLOW))
    sink.close()
    ids = {r["request_id"] for r in read_records(tmp_path / "db.sqlite3", limit=1000)}
    assert ids == {f"r{i}" for i in range(1, 500, 2)}


def test_sink_in_all_mode_keeps_everything(tmp_path: Path) -> None:
    sink = SQLiteSink(tmp_path / "db.sqlite3", flagged_only=False)
    for i in range(20):
        sink.submit(_record(i, Action.ALLOW))
    sink.close()
    assert len(list(read_records(tmp_path / "db.sqlite3"))) == 20


def test_importing_the_gateway_for_an_upstream_does_not_import_torch() -> None:
    code = (
        "import sys; from gateway.app import create_app; from gateway.settings import Settings;"
        "import gateway.cli;"
        "create_app(Settings.load(upstream={'url': 'http://127.0.0.1:9/v1'}, cache_dir='/tmp/rg-t'));"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
