"""Two minutes of the soak (bench/soak.py): the full guard and the SQLite sink at 80 % of a capacity
measured briefly, open loop. Every request is answered 200 and every answered request's record reaches
the store; the report has its minutes and its RSS samples.

Latency and RSS are reported, not asserted: on a shared CI machine they measure the neighbours too (the
30-minute run and its verdict are in docs/reliability.md). `RAILGUARD_SOAK_MINUTES` lengthens the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "soak.py"
MINUTES = int(os.environ.get("RAILGUARD_SOAK_MINUTES", "2"))


def test_soak_loses_nothing_and_fails_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [
        sys.executable, str(SCRIPT), "--minutes", str(MINUTES), "--capacity-s", "8",
        "--capacity-warmup-s", "2", "--wait-quiet-s", "0", "--settle-s", "15", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=MINUTES * 60 + 240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    load, records = report["load"], report["records"]
    print(f"\n{result.stdout}")  # the table, with -s

    assert report["capacity"]["rps"] > 0 and report["capacity"]["errors"] == 0, report["capacity"]
    assert load["rate"] == pytest.approx(report["capacity"]["rps"] * 0.8)
    assert load["sent"] > 0
    assert load["errors"] == 0, (load["statuses"], load["error_examples"])
    assert load["statuses"] == {"200": load["sent"]}
    assert records["sink"] == "sqlite"
    assert records["answered"] >= load["sent"]  # the capacity phase's answers are checked too
    assert records["lost"] == 0, records["lost_examples"]
    assert records["gateway_exit"] in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
    assert report["gateway_log"]["errors"] == 0, report["gateway_log"]["examples"]

    minutes = report["minutes"]
    assert [m["minute"] for m in minutes] == list(range(1, MINUTES + 1))
    assert all(m["answered"] > 0 and m["p99_ms"] >= m["p50_ms"] > 0 for m in minutes), minutes
    assert sum(m["answered"] for m in minutes) == load["sent"]
    samples = report["rss_samples"]
    assert len(samples) >= MINUTES * 60 / report["meta"]["args"]["sample_s"]
    assert all(s["rss_mb"] > 0 for s in samples)
    assert report["rss"]["end_mb"] > 0 and "growth_pct" in report["rss"]
    assert set(report["verdict"]["checks"]) and isinstance(report["verdict"]["pass"], bool)
