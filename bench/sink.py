"""The record sinks side by side: what `submit` costs the request path, and records/s into the store.

One run starts a real `redis-server` (Debian's package, append-only file with fsync every second, as a
production Redis would run) on a free port and, for each sink (the embedded SQLite file, the Redis
Stream, and the Redis Stream while Redis is down, i.e. spooling), submits ``--records`` distinct
flagged records (each with its own request id and a realistic conversation) as fast as one thread
can, then measures:

* submit µs p50/p99: the time the request path spends handing a record over;
* records/s: from the first submit until the store holds every record (close() returns).

Unpaced, the submitting thread outruns every store, so the queue fills and the overflow goes to the
spool on the request path (the p99). The paced rows submit at ``--rate`` records/s, as traffic does.

    .venv/bin/python bench/sink.py [--records 20000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.policy.verdict import Action, Stage, Verdict
from gateway.records import DecisionRecord
from gateway.sinks.redis import RedisStreamSink
from gateway.sinks.sqlite import SQLiteSink

STREAM = "{railguard}:records"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def records(n: int) -> list[DecisionRecord]:
    verdict = Verdict(Stage.INPUT, Action.REFUSE, ("violence",), scores={"violence": 0.93})
    out = []
    for i in range(n):
        prompt = [
            {"role": "system", "content": "You are a helpful assistant for an online shop."},
            {"role": "user", "content": f"Request {i}: how would someone hurt the courier who was late? "
             f"Reply to support-{i}@example.com."},
        ]  # fmt: skip
        out.append(
            DecisionRecord(
                uuid.uuid4().hex, time.time(), f"tenant-{i % 4}", "gemma-3-270m", "local", "v7", "en",
                False, Action.REFUSE, 200, input=verdict, prompt=prompt,
                response="I can't help with hurting anyone. If a delivery was late, our support can help.",
            )
        )  # fmt: skip
    return out


def measure(make: Callable[[], Any], batch: list[DecisionRecord], rate: float = 0.0) -> dict[str, float]:
    sink = make()
    times = []
    started = time.perf_counter()
    for i, record in enumerate(batch):
        if rate:  # paced: the i-th record is due at i / rate seconds
            time.sleep(max(0.0, started + i / rate - time.perf_counter()))
        t = time.perf_counter()
        sink.submit(record)
        times.append(time.perf_counter() - t)
    sink.close()
    elapsed = time.perf_counter() - started
    times.sort()
    return {
        "submit_us_p50": times[len(times) // 2] * 1e6,
        "submit_us_p99": times[int(len(times) * 0.99)] * 1e6,
        "records_per_s": len(batch) / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="records/s of the paced rows")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        port = free_port()
        server = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(0.5)
            url = f"redis://127.0.0.1:{port}/0"
            results["sqlite"] = measure(lambda: SQLiteSink(tmp / "records.sqlite3"), records(args.records))
            results["redis"] = measure(
                lambda: RedisStreamSink(url, stream=STREAM, spool_path=tmp / "a.spool"), records(args.records)
            )
            results[f"sqlite, paced {args.rate:.0f}/s"] = measure(
                lambda: SQLiteSink(tmp / "paced.sqlite3"), records(args.records), args.rate
            )
            results[f"redis, paced {args.rate:.0f}/s"] = measure(
                lambda: RedisStreamSink(url, stream=STREAM, spool_path=tmp / "c.spool"),
                records(args.records),
                args.rate,
            )
            results["redis down (spooling)"] = measure(
                lambda: RedisStreamSink(
                    f"redis://127.0.0.1:{free_port()}/0",
                    stream=STREAM,
                    spool_path=tmp / "b.spool",
                    timeout_s=0.2,
                ),
                records(args.records),
            )
        finally:
            server.terminate()
            server.wait()
    print(f"{args.records} distinct flagged records per row, one submitting thread\n")
    print("| sink | submit µs p50 | submit µs p99 | records/s into the store |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['submit_us_p50']:.1f} | {r['submit_us_p99']:.1f} | {r['records_per_s']:,.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"records": args.records, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
