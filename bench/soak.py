"""Soak: the full guard and the records sink held at 80 % of their measured capacity for 30 minutes.

One run starts the stub upstream (standing for a remote vLLM), with `--redis` a real redis-server, and
one `railguard serve` in upstream mode with the full default guard (rules and every classifier, on input
and output) and every decision record sent to the sink (`record: all`; the embedded SQLite file, or with
`--redis` a Redis Stream), each on a free 127.0.0.1 port (bench/processes.py, as bench/overhead.py does).
Then:

1. capacity: `--concurrency` connections sending back to back for `--capacity-s` after a warm-up: req/s;
2. the soak: requests due at `--fraction` (0.8) of that rate, Poisson arrivals, for `--minutes`. Open
   loop: each request is sent when due whatever is still in flight, and its latency counts from then.
   Every prompt is a new everyday one (bench/everyday.py). Every `--sample-s` the gateway's RSS and CPU
   are sampled; latency p50/p99 and errors are kept per minute;
3. records: every answered request's id (`x-request-id`) must be in the store once the gateway has
   stopped cleanly (lost otherwise); `late` counts those not yet there `--settle-s` after the last answer,
   the gateway still running.

It writes a JSON report (`--out`) and prints the table; `--write-docs` also puts the table and plots of
p50/p99 per minute and of RSS over time into docs/reliability.md (between its SOAK markers) and
docs/img/. The verdict and its thresholds: bench/soak_report.py. The exit status is 0 whatever the
verdict (read it in the report); tests/integration/test_bench_soak.py runs two minutes of it.

    .venv/bin/python bench/soak.py [--minutes 30] [--redis] [--write-docs] [--out FILE]
        [--capacity-s 25] [--concurrency 32] [--fraction 0.8] [--arrivals poisson|fixed]
    .venv/bin/python bench/soak.py --report-only FILE    # the docs again, from a run's report
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import shlex
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from processes import (
    CLASSIFIER_CACHE,
    HELPER_CPU,
    STREAM,
    CpuMonitor,
    Processes,
    can_pin,
    free_port,
    wait_quiet,
)
from soak_load import Pool, Requests, closed_loop, open_loop
from soak_report import markdown, p99_flatness, rss_growth, verdict, write_docs

GATEWAY = "gateway"


def gateway_settings(records: Path, redis_port: int | None) -> str:
    """The full default guard, metrics on, every decision record to the sink."""
    text = f"metrics: true\nclassifiers: {{options: {{cache_dir: '{CLASSIFIER_CACHE}'}}}}\n"
    if redis_port is not None:
        return text + f"redis_url: redis://127.0.0.1:{redis_port}/0\nsink: {{kind: redis, record: all}}\n"
    return text + f"sink: {{kind: sqlite, record: all, path: '{records}'}}\n"


def sqlite_ids(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return {row[0] for row in conn.execute("SELECT request_id FROM records")}


def redis_ids(port: int) -> set[str]:
    import redis

    ids: set[str] = set()
    with redis.Redis(host="127.0.0.1", port=port) as client:
        low = "-"
        while entries := client.xrange(STREAM, min=low, count=10_000):
            ids.update(fields[b"id"].decode() for _, fields in entries if b"id" in fields)
            low = "(" + entries[-1][0].decode()
    return ids


async def settle(answered: set[str], stored: Callable[[], set[str]], seconds: float) -> int:
    """Wait up to `seconds` for every answered request's record; how many are still missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while missing := len(answered - stored()):
        if loop.time() >= deadline:
            return missing
        await asyncio.sleep(1.0)
    return 0


def log_errors(log: Path) -> dict[str, Any]:
    """Lines of the gateway's log at level error or above, and tracebacks."""
    count, examples = 0, list[str]()
    for line in log.read_text(errors="replace").splitlines():
        bad = "Traceback" in line
        if line.startswith("{"):
            with contextlib.suppress(orjson.JSONDecodeError):
                bad = bad or orjson.loads(line).get("level") in ("error", "critical")
        if bad:
            count += 1
            if len(examples) < 5:
                examples.append(line[:500])
    return {"errors": count, "examples": examples}


async def soak(args: argparse.Namespace, procs: Processes, port: int) -> dict[str, Any]:
    pool, requests = Pool(port), Requests(port, args.stream_every)
    monitor = CpuMonitor(procs.pids())
    foreign = await wait_quiet(monitor, 0.1, args.wait_quiet_s)
    print(f"capacity: {args.concurrency} connections for {args.capacity_s:g} s "
          f"(others used {foreign:.2f} cores before)", file=sys.stderr)  # fmt: skip
    before = monitor.snapshot()
    capacity = await closed_loop(
        pool, requests, args.concurrency, args.capacity_warmup_s, args.capacity_s, args.timeout_s
    )
    capacity["cpu"] = CpuMonitor.usage(before, monitor.snapshot())  # the warm-up included
    answered: set[str] = capacity.pop("answered_ids")
    if capacity["rps"] <= 0:
        raise RuntimeError(f"no capacity measured: {capacity}")
    rate = capacity["rps"] * args.fraction
    print(f"capacity {capacity['rps']:.1f} req/s ({capacity['errors']} errors); soak at {rate:.1f} req/s "
          f"for {args.minutes} min", file=sys.stderr)  # fmt: skip
    start = monitor.snapshot()
    tally, sampler, schedule = await open_loop(
        pool, requests, rate, args.minutes * 60, args.timeout_s, poisson=args.arrivals == "poisson",
        seed=args.seed, gateway_pid=procs.procs[GATEWAY].pid, sample_s=args.sample_s,
    )  # fmt: skip
    cpu = CpuMonitor.usage(start, monitor.snapshot())
    pool.close()
    answered |= tally.answered
    minutes = tally.minutes(args.minutes)
    return {
        "capacity": capacity,
        "load": {
            "fraction": args.fraction,
            "rate": rate,
            "arrivals": args.arrivals,
            "minutes": args.minutes,
            **schedule,
            "statuses": dict(tally.statuses),
            "actions": dict(tally.actions),
            "errors": tally.errors,
            "error_examples": tally.examples,
        },
        "minutes": minutes,
        "p99": p99_flatness(minutes),
        "rss_samples": sampler.samples,
        "rss": rss_growth(sampler.samples, args.minutes),
        "cpu": {**cpu, "foreign_before": foreign},
        "answered_ids": answered,
    }


async def check_records(
    args: argparse.Namespace, procs: Processes, answered: set[str], stored: Callable[[], set[str]]
) -> dict[str, Any]:
    late = await settle(answered, stored, args.settle_s)
    procs.stop(GATEWAY)  # SIGTERM: the gateway drains and closes its sink
    ids = stored()
    lost = sorted(answered - ids)
    return {
        "sink": "redis" if args.redis else "sqlite",
        "answered": len(answered),
        "stored": len(ids),
        "settle_s": args.settle_s,
        "late": late,
        "lost": len(lost),
        "lost_examples": lost[:10],
        "gateway_exit": procs.procs[GATEWAY].returncode,  # -15: drained, then uvicorn re-raised SIGTERM
    }


def run(args: argparse.Namespace, command: str, pin: bool) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="railguard-soak-") as tmp,
        Processes(Path(tmp), pin) as procs,
    ):
        workdir = Path(tmp)
        stub, port = free_port(), free_port()
        redis_port = free_port() if args.redis else None
        procs.stub("stub", stub)
        if redis_port is not None:
            procs.redis("redis", redis_port)
        records = workdir / "records.sqlite3"
        procs.gateway(GATEWAY, port, stub, gateway_settings(records, redis_port))
        procs.wait_gateway(GATEWAY, port)
        if pin:
            os.sched_setaffinity(0, {HELPER_CPU})
        report = asyncio.run(soak(args, procs, port))
        answered = report.pop("answered_ids")
        stored = (lambda: redis_ids(redis_port)) if redis_port is not None else (lambda: sqlite_ids(records))
        report["records"] = asyncio.run(check_records(args, procs, answered, stored))
        report["gateway_log"] = log_errors(procs.log(GATEWAY))
    report["meta"] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "pinned": pin,
        "command": command,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    report["verdict"] = verdict(report)
    return report


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30, help="the soak's length")
    parser.add_argument("--fraction", type=float, default=0.8, help="of the measured capacity")
    parser.add_argument("--arrivals", choices=("poisson", "fixed"), default="poisson")
    parser.add_argument("--redis", action="store_true", help="records to a Redis Stream (a redis-server)")
    parser.add_argument("--capacity-s", type=float, default=25.0, help="the capacity phase, measured")
    parser.add_argument("--capacity-warmup-s", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the capacity phase")
    parser.add_argument("--stream-every", type=int, default=4, help="every n-th request streamed (0: none)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="how often RSS and CPU are sampled")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="a request unanswered by then fails")
    parser.add_argument("--settle-s", type=float, default=30.0, help="wait for the records this long")
    parser.add_argument("--wait-quiet-s", type=float, default=30.0,
                        help="first wait up to this long for a quiet machine")  # fmt: skip
    parser.add_argument("--seed", type=int, default=27)
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin CPUs")
    parser.add_argument("--out", type=Path, help="the JSON report (default ~/.cache/railguard/bench/)")
    parser.add_argument("--write-docs", action="store_true",
                        help="the table and plots into docs/reliability.md and docs/img/")  # fmt: skip
    parser.add_argument("--report-only", type=Path, metavar="JSON",
                        help="run nothing: write the docs from this report of an earlier run")  # fmt: skip
    args = parser.parse_args(argv)
    if (args.write_docs or args.report_only) and importlib.util.find_spec("matplotlib") is None:
        parser.error("the plots need matplotlib (pip install matplotlib, or the `train` extra)")
    if args.minutes < 1 or not 0 < args.fraction <= 1 or args.capacity_s <= 0 or args.concurrency < 1:
        parser.error("--minutes >= 1, 0 < --fraction <= 1, --capacity-s > 0 and --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report_only:
        report = json.loads(args.report_only.read_text())
        print(markdown(report, plots=False))
        write_docs(report)
        print("docs/reliability.md (SOAK section) and docs/img/soak-*.png written")
        return 0
    command = shlex.join([".venv/bin/python", "bench/soak.py", *(sys.argv[1:] if argv is None else argv)])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up on `kill`
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    report = run(args, command, args.pin and can_pin())
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path.home() / ".cache" / "railguard" / "bench" / f"soak-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report, plots=False))
    print(f"\nreport: {out}")
    if args.write_docs:
        write_docs(report)
        print("docs/reliability.md (SOAK section) and docs/img/soak-*.png written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
