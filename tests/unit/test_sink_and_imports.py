from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.policy.verdict import Action
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


class Events:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def sink_event(self, event: str, count: int = 1) -> None:
        self.counts[event] = self.counts.get(event, 0) + count

    def set_sink_lag(self, seconds: float) -> None:
        pass


def test_a_locked_store_spools_and_replays_without_losing_records(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    events = Events()
    sink = SQLiteSink(db, events=events, busy_timeout_s=0.05, retries=2)
    blocker = sqlite3.connect(db)
    blocker.execute("BEGIN EXCLUSIVE")  # a real fault: another writer holds the database
    for i in range(5):
        sink.submit(_record(i, Action.REFUSE))
    deadline = time.monotonic() + 10
    while events.counts.get("spooled", 0) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events.counts.get("spooled") == 5 and sink.spool.pending()
    blocker.rollback()
    blocker.close()
    sink.submit(_record(99, Action.REFUSE))
    sink.close()
    ids = {r["request_id"] for r in read_records(db)}
    assert ids == {"r0", "r1", "r2", "r3", "r4", "r99"}
    assert events.counts.get("replayed") == 5 and not sink.spool.pending()
