"""The gateway-overhead benchmark runs end to end (`--quick`) and prints its table with sane figures.

Only a smoke test: figures on a shared CI machine are far too noisy to hold the targets to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "overhead.py"

POSITIVE_ROWS = [
    "Sequential latency p50 (ms)",
    "Sequential latency p99 (ms)",
    "Streaming TTFT p50 (ms)",
    "Streaming TTFT p99 (ms)",
    "c=32 throughput (req/s)",
    "c=32 latency p50 (ms)",
    "c=32 latency p99 (ms)",
    "Full guard (rules + classifiers, in and out): sequential p50 (ms)",
    "Full guard, upstream called during the input guard: sequential p50 (ms)",
    "Rule guard, every record to the Redis Stream: sequential p50 (ms)",
]
OTHER_ROWS = [
    "Metrics on − off, sequential p50 (ms)",
    "Gateway CPU per request, metrics on (µs)",
    "c=32 throughput, metrics off (req/s)",
    "CPU used by other processes, worst phase (cores)",
]


def _cells(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _number(cell: str) -> float:
    return float(cell.split()[0])


def test_quick_run_prints_the_table(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _cells(result.stdout)
    for label in POSITIVE_ROWS:
        assert label in rows, f"missing row {label!r} in:\n{result.stdout}"
        direct, through = _number(rows[label][0]), _number(rows[label][1])
        assert direct > 0 and through > 0, f"{label}: {rows[label]}"
    for label in OTHER_ROWS:
        assert label in rows, f"missing row {label!r} in:\n{result.stdout}"
        _number(rows[label][0])  # a number, whatever its sign
    assert _number(rows["Gateway CPU per request, metrics on (µs)"][0]) > 0
    result_json = json.loads(out.read_text())
    figures = result_json["figures"]
    assert figures["c_through_rps"]["median"] > 0 and figures["c_redis_rps"]["median"] > 0
    # every request the Redis-sink gateway answered left its record in the stream
    assert result_json["redis_records"] > 100
    assert figures["seq_through_p50"]["median"] > 0
